"""A stack tells the truth about its ports: a second on the first one's ports fails in one line; the first goes on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hostd.guard.health import ensure_instance
from hostd.ops import stack as stackmod
from hostd.ops.readiness import ForeignStack
from hostd.settings import Ports, Settings
from tests.e2e.stackfixture import Stack


def _port_variables(ports: Ports) -> dict[str, str]:
    return {f"HOSTD_{name.upper()}_PORT": str(getattr(ports, name)) for name in Ports.__dataclass_fields__}


@pytest.mark.parametrize("verb", ["up", "run"])
def test_a_second_stack_on_the_first_ones_ports_fails_in_one_line(stack: Stack, tmp_path: Path, verb: str) -> None:
    second = tmp_path / "var"
    env = dict(os.environ, HOSTD_DATA=str(second), **_port_variables(stack.settings.ports))
    result = subprocess.run([sys.executable, "-m", "hostd.ops.stack", verb], env=env, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    https = stack.settings.ports.https
    assert re.fullmatch(rf"hostd: port {https} \(HTTPS, HAProxy\) is taken by haproxy \(pid \d+\)\n", result.stderr), \
        result.stderr
    assert not second.exists()  # checked before anything was made or started
    # The first stack never noticed.
    assert stackmod.health_problem(stack.settings) is None
    assert stack.request("/demo/hello")[0] == 200


def test_pools_of_another_data_directory_are_not_taken_for_ours(stack: Stack, tmp_path: Path) -> None:
    ours = Settings(data_dir=tmp_path / "var", bind=stack.settings.bind, ports=stack.settings.ports)
    ours.data_dir.mkdir()
    ensure_instance(ours.instance_file)
    git = stack.settings.ports.git
    with pytest.raises(ForeignStack, match=rf"^port {git} \(git pool\) answers for another data directory than "
                                           rf"{re.escape(str(ours.data_dir))}: \S.* \(pid \d+\)$"):
        stackmod.health_problem(ours)
    # While the stack's own settings find every pool its own.
    assert stackmod.health_problem(stack.settings) is None


def test_every_announcement_says_where_the_demo_password_is(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stackmod._announce(stack.settings)
    out = capsys.readouterr().out
    kept = stack.settings.data_dir / "demo-password"
    assert f"Demo user 'demo': password in {kept} (mode 0600)\n" in out
    assert kept.read_text().strip() not in out
