"""Benchmarks (``make bench``), and the tests of their harness.

The benchmarks print what things cost; they never pass or fail on a number.
``make bench`` runs every benchmark listed in :mod:`tests.bench.__main__`;
each one is also runnable alone (``python -m tests.bench.singlemalt_bench``).
Timings belong here, not in the tests; the ``test_*`` modules beside them
check the harness itself, without timing anything.
"""
