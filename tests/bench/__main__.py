"""``python -m tests.bench`` (``make bench``): run every benchmark's ``main()`` in turn.

Add a benchmark by writing a module with ``main(argv: list[str]) -> int``
and naming it in :data:`BENCHMARKS`.
"""

from __future__ import annotations

import importlib
import sys

#: Modules whose ``main([])`` is run, in this order.
BENCHMARKS: tuple[str, ...] = ("tests.bench.singlemalt_bench", "tests.bench.vcs_bench", "tests.bench.ssh_bench",
                              "tests.bench.hooks_bench", "tests.bench.pages_bench")


def main() -> int:
    """Run each benchmark with its defaults; the exit status is the worst of theirs."""
    status = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        status = max(status, int(importlib.import_module(name).main([])))
    return status


if __name__ == "__main__":
    sys.exit(main())
