"""HAProxy's failed-login counts survive ``make reload``.

haproxy.cfg counts, per client address, the 401s answered to requests that
carried credentials, and answers 429 above 600 a minute: a coarse flood guard
behind singlemalt's own throttle. A reload starts a new HAProxy worker with a
new, empty stick table; the ``peers hostd`` section has the old worker hand
its table over first, so a reload never gives a password guesser a fresh
allowance. Every client here is 127.0.0.1, so the test starts and ends with
:meth:`Stack.forget_failed_logins`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from hostd.ops import haproxy, pooladmin
from hostd.ops import stack as stackmod
from hostd.settings import PROJECT_ROOT, Settings
from tests.e2e.stackfixture import VENV_BIN, Stack
from tests.polling import wait_until

# haproxy.cfg: "sc_gpc0_rate(0) gt 600", so the 601st wrong password is
# still answered by the pool and the next request gets HAProxy's 429.
THRESHOLD = 600
# Real wrong passwords sent; far fewer than the threshold, because long
# before 600 singlemalt's own throttle answers this address 429, which
# HAProxy does not count (that is the point of the coarse guard).
GUESSES = 5
HAPROXY_429 = b"Too many failed authentication attempts"
# The stick table is type ipv6: IPv4 clients are stored as mapped addresses.
CLIENT = "::ffff:127.0.0.1"


def failed_logins(settings: Settings) -> int | None:
    """gpc0 of 127.0.0.1 in the https table of the worker on the admin socket."""
    table = haproxy.command(settings, "show table https")
    match = re.search(rf" key={re.escape(CLIENT)} .*\bgpc0=(\d+)", table)
    return None if match is None else int(match[1])


def make_reload(settings: Settings) -> None:
    """What ``make reload`` runs, in the stack's environment."""
    subprocess.run([str(VENV_BIN / "python"), "-m", "hostd.ops.stack", "reload"], cwd=PROJECT_ROOT,
                   env=stackmod.environment(settings), check=True, capture_output=True, timeout=60)


@pytest.fixture
def clean_counters(stack: Stack) -> Iterator[None]:
    stack.forget_failed_logins()
    yield
    stack.forget_failed_logins()


def test_failed_logins_and_the_429_survive_reloads(stack: Stack, clean_counters: None) -> None:
    settings = stack.settings
    # One wrong password each for a few accounts: singlemalt's own lockouts
    # (429s of their own, not counted here) never trip.
    for i in range(GUESSES):
        status, _ = stack.request("/demo/hello.git/info/refs?service=git-receive-pack",
                            (f"guesser{i}", "wrong password"))
        assert status == 401, f"guess {i}"
    assert failed_logins(settings) == GUESSES
    # A flood past the guard, as singlemalt would never let it happen
    # through the pools (memcached down, say), written into the table.
    haproxy.command(
        settings, f"set table https key {CLIENT} data.gpc0 {THRESHOLD + 1} data.gpc0_rate {THRESHOLD + 1}")
    assert failed_logins(settings) == THRESHOLD + 1
    status, body = stack.request("/demo/hello")
    assert (status, HAPROXY_429 in body) == (429, True)

    # The worker started by a reload learns its predecessor's table (within
    # milliseconds) and can hand it on at once: two reloads in a row. (A
    # stack started a moment ago is not ready at once; reload waits for it.)
    for reload in range(2):
        old_worker = pooladmin.worker_pid(settings)
        make_reload(settings)
        assert pooladmin.worker_pid(settings) != old_worker
        wait_until(f"reload {reload}: the new worker has the count",
                   lambda: failed_logins(settings) is not None, timeout=5)
        assert failed_logins(settings) == THRESHOLD + 1, f"reload {reload}"
        # Still over the threshold: refused before reaching any pool.
        status, body = stack.request("/demo/hello")
        assert (status, HAPROXY_429 in body) == (429, True), f"reload {reload}"

    stack.forget_failed_logins()
    assert stack.request("/demo/hello")[0] == 200
