"""deploy/supervisord.conf in the foreground (``make run``): supervisord's own log stays out of the terminal."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from hostd.ops import stack
from hostd.settings import Settings
from tests.polling import wait_until
from tests.ports import free_ports


def test_in_the_foreground_supervisord_prints_nothing_and_logs_everything(tmp_path: Path) -> None:
    names = ("HTTPS", "HTTP", "STATS", "PEERS", "GIT", "HG", "WEB", "MEMCACHED", "SSH", "SSH_RELAY", "QUEUE")
    env = {f"HOSTD_{name}_PORT": str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path / "var"), **env})
    for directory in (settings.run_dir, settings.log_dir):
        directory.mkdir(parents=True)
    # The real file, as `make run` starts it (-n), but none of its programs: supervisord alone.
    environ = stack.environment(settings)
    environ.update({f"HOSTD_{program.upper()}_AUTOSTART": "false" for program in stack.PROGRAMS})
    command = [str(Path(sys.executable).parent / "supervisord"), "-c", str(stack.SUPERVISORD_CONF), "-n"]
    process = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = settings.log_dir / "supervisord.log"
    try:
        wait_until("supervisord is running", lambda: log.exists() and "supervisord started" in log.read_text(),
                   timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert (out, err) == (b"", b"")
    # The log file keeps what the terminal no longer shows.
    assert "CRIT Server 'unix_http_server' running without any HTTP authentication checking" in log.read_text()
