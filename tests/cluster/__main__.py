"""``python -m tests.cluster up|down|status|check|measure``: the multi-host lab's make targets.

``make cluster`` (up), ``make cluster-down``, ``make cluster-check``, ``make
cluster-measure``; ``status`` prints what runs where.
"""

from __future__ import annotations

import signal
import sys

from hostd.ops.haproxy import StackError
from tests.cluster.lab import Lab, LabError


def _exit(signum: int, _frame: object) -> None:
    # SIGTERM (a CI timeout, kill): unwind, so that a lab the command built is removed.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit)
    lab = Lab.from_env()
    try:
        if argv == ["up"]:
            lab.up()
            print(lab.layout())
            return 0
        if argv == ["down"]:
            for line in lab.down():
                print(f"removed {line}")
            return 0
        if argv == ["status"]:
            print(lab.layout() if lab.is_up() else "the lab is not up (make cluster)")
            return 0
        if argv == ["measure"]:
            from tests.cluster.measure import main as measure
            return measure(lab)
        if argv == ["check"]:
            from tests.cluster.check import check
            return check(lab)
    except (LabError, StackError) as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    print("usage: python -m tests.cluster up|down|status|check|measure", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
