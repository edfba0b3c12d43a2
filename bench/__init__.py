"""Benchmarks: they print what things cost; they never pass or fail on a number.

``make bench`` runs every benchmark listed in :mod:`bench.__main__`; each
one is also runnable alone (``python -m bench.singlemalt_bench``).  Timings
belong here, not in the tests.
"""
