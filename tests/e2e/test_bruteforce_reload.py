"""HAProxy's failed-login counts survive ``make reload``.

haproxy.cfg counts, per client address, the 401s answered to requests that
carried credentials, and answers 429 above 30 a minute. A reload starts a new
HAProxy worker with a new, empty stick table; the ``peers hostd`` section has
the old worker hand its table over first, so a reload never gives a password
guesser a fresh allowance. Every client here is 127.0.0.1, so the test
starts and ends with :meth:`Stack.forget_failed_logins`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from hostd import pooladmin
from hostd import stack as stackmod
from hostd.settings import PROJECT_ROOT, Settings
from tests.e2e.stackfixture import VENV_BIN, Stack
from tests.polling import wait_until

# haproxy.cfg: "sc_gpc0_rate(0) gt 30", so the 31st wrong password is still
# answered by the pool and the next request gets HAProxy's 429.
THRESHOLD = 30
HAPROXY_429 = b"Too many failed authentication attempts"
# The stick table is type ipv6: IPv4 clients are stored as mapped addresses.
CLIENT = "::ffff:127.0.0.1"


def failed_logins(settings: Settings) -> int | None:
    """gpc0 of 127.0.0.1 in the https table of the worker on the admin socket."""
    table = stackmod.haproxy_command(settings, "show table https")
    match = re.search(rf" key={re.escape(CLIENT)} .*\bgpc0=(\d+)", table)
    return None if match is None else int(match[1])


def make_reload(settings: Settings) -> None:
    """What ``make reload`` runs, in the stack's environment."""
    subprocess.run([str(VENV_BIN / "python"), "-m", "hostd.stack", "reload"], cwd=PROJECT_ROOT,
                   env=stackmod.environment(settings), check=True, capture_output=True, timeout=60)


@pytest.fixture
def clean_counters(stack: Stack) -> Iterator[None]:
    stack.forget_failed_logins()
    yield
    stack.forget_failed_logins()


def test_failed_logins_and_the_429_survive_reloads(stack: Stack, clean_counters: None) -> None:
    settings = stack.settings
    # One wrong password each for many accounts: singlemalt's own per-account
    # lockout (a 429 of its own, not counted here) never trips.
    for i in range(THRESHOLD + 1):
        status, _ = stack.request("/demo/hello.git/info/refs?service=git-receive-pack",
                            (f"guesser{i}", "wrong password"))
        assert status == 401, f"guess {i}"
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
