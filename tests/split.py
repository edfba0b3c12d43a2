"""Run the whole suite as two pytest sessions side by side: ``python -m tests.split [--coverage] [PYTEST ARGS...]``.

``make test`` and ``make test-external-db`` run it. The stack tests
(``tests/e2e``, then ``tests/chaos``) start real stacks and mostly wait on
clients, servers and timeouts; the other tests (units, HAProxy on its own,
the benchmark harness, fuzzing) run beside them, on the other core, instead
of after them. Together they are every test under ``tests/``.

- Each session has a base temporary directory of its own: two sessions on
  pytest's default one reset its permissions under each other, and a
  stack's PostgreSQL (run as ``postgres``) loses its data directory.
- ``--coverage`` measures singlemalt in the unit session (the stacks run it
  in other processes) and requires all of it, as ``make test`` does.
- The stack session prints as it runs; the other's output follows when it
  is done, so neither is interleaved. The exit status is the stack
  session's if it failed, else the other's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: The sessions' tests: those that start stacks, in the order they run, and everything else.
STACKS = ["tests/e2e", "tests/chaos"]
COVERAGE = ["--cov=singlemalt", "--cov-report=term-missing:skip-covered", "--cov-fail-under=100"]


def commands(args: list[str], base: Path, *, coverage: bool) -> tuple[list[str], list[str]]:
    """The two pytest command lines: the stack session's and the other's."""
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    stacks = [*pytest, f"--basetemp={base / 'stacks'}", *args, *STACKS]
    rest = [*pytest, f"--basetemp={base / 'rest'}", *(COVERAGE if coverage else []), *args,
            *(f"--ignore={path}" for path in STACKS), "tests"]
    return stacks, rest


def main(argv: list[str]) -> int:
    coverage = "--coverage" in argv
    args = [arg for arg in argv if arg != "--coverage"]
    base = Path(tempfile.mkdtemp(prefix="hostd-suite-"))
    try:
        stacks, rest = commands(args, base, coverage=coverage)
        root = TESTS.parent
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as held:
            other = subprocess.Popen(rest, cwd=root, stdout=held, stderr=subprocess.STDOUT, text=True)
            try:
                stack_status = subprocess.run(stacks, cwd=root, check=False).returncode
            finally:
                if other.poll() is None:
                    print("\n== waiting for the other tests ==", flush=True)
                other.wait()
            held.seek(0)
            print(f"\n== the other tests ({' '.join(rest[3:])}) ==", flush=True)
            shutil.copyfileobj(held, sys.stdout)
            sys.stdout.flush()
        return stack_status or other.returncode
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main(sys.argv[1:]))
