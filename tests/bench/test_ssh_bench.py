"""The SSH benchmark: its pure parts, and the whole machinery once end to end with tiny counts.

No timing is asserted; ``make bench`` reports those.  The end-to-end test
starts a real stack (its sshd, ``hostd-ssh``, the gateway) and the reference
sshd with git-shell, on a tiny generated repository, and checks that the
report has every row with a finite ratio.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from hostd.ops import sshd
from hostd.settings import Settings
from hostd.store.keys import parse_public_key
from tests.bench import ssh_scenarios as sc
from tests.bench.fastimport import build_git
from tests.bench.history import HistorySpec
from tests.bench.interference import Monitor, Span
from tests.bench.report import Results
from tests.bench.ssh_bench import ROWS, main_table, parse_args, render, run, verdict
from tests.bench.ssh_ref import (
    ACCOUNT,
    GIT_SHELL,
    MANY_ACCOUNT,
    SSHD,
    ed25519_line,
    fake_key_lines,
    passwd_text,
    render_config,
)

TINY_REPO = HistorySpec(name="tiny", seed=11, commits=40, files=12, dirs=4, lines=(5, 30), long_branches=("maint",),
                        topics=0.1, tags=3)
TINY_PLAN = sc.Plan(fetch_runs=2, clone_runs=1, push_runs=2, helper_runs=3, keys=50, budget=30.0)


def test_fake_keys_are_keys_hostd_and_ssh_keygen_read_alike(tmp_path: Path) -> None:
    lines = list(fake_key_lines(3))
    assert lines == list(fake_key_lines(3)) and lines != list(fake_key_lines(3, seed=2))
    (tmp_path / "keys").write_text("".join(line + "\n" for line in lines))
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "keys")], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    for line, listing in zip(lines, listed, strict=True):
        key = parse_public_key(line)
        assert key.kind == "ssh-ed25519" and key.bits == 256
        assert listing.split()[1] == key.fingerprint
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519_line(b"short", "x")


def test_passwd_gives_both_accounts_git_shell_first_and_keeps_the_machines_lines() -> None:
    system = "root:x:0:0:root:/root:/bin/bash\ngit:x:999:999::/home/git:/bin/sh\nsshd:x:104:65534::/run/sshd:/x\n"
    lines = passwd_text(Path("/srv/ref"), system).splitlines()
    assert lines[:2] == [f"{ACCOUNT}:x:0:0:reference {ACCOUNT}:/srv/ref:{GIT_SHELL}",
                         f"{MANY_ACCOUNT}:x:0:0:reference {MANY_ACCOUNT}:/srv/ref:{GIT_SHELL}"]
    assert lines[2:] == ["root:x:0:0:root:/root:/bin/bash", "sshd:x:104:65534::/run/sshd:/x"]


#: Where the reference's sshd_config differs from the stack's, on purpose: place, accounts, how keys are found.
OWN_SETTINGS = {"Port", "ListenAddress", "HostKey", "PidFile", "AllowUsers", "PermitRootLogin", "StrictModes",
                "AuthorizedKeysFile", "AuthorizedKeysCommand", "AuthorizedKeysCommandUser", "SetEnv"}


def directives(config: str) -> set[str]:
    return {line for line in config.splitlines()
            if line and not line.startswith("#") and line.split()[0] not in OWN_SETTINGS}


def test_the_reference_sshd_has_the_stacks_settings_but_for_keys_and_accounts(tmp_path: Path) -> None:
    ours = sshd.render_config(Settings(data_dir=tmp_path), Path("/usr/local/libexec/hostd/hostd-ssh-0123"))
    reference = render_config(2222, tmp_path, [tmp_path / "ssh_host_ed25519_key"])
    assert directives(reference) == directives(ours)
    assert "AuthorizedKeysFile .ssh/authorized_keys-%u" in reference and "PermitRootLogin yes" in reference
    assert "AuthorizedKeysCommand" not in reference


def test_lookup_command_is_the_stacks_line_with_the_fingerprint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.run_dir.mkdir()
    binary = Path("/usr/local/libexec/hostd/hostd-ssh-0123")
    (settings.run_dir / "sshd_config").write_text(sshd.render_config(settings, binary))
    fingerprint = "SHA256:" + "A" * 43
    assert sc.lookup_command(settings, fingerprint) == [str(binary), "keys", str(settings.ssh_socket), fingerprint]


def test_ssh_command_makes_a_new_checked_connection_with_one_key(tmp_path: Path) -> None:
    command = sc.ssh_command(tmp_path / "known hosts", tmp_path / "key", 2222)
    for option in ("-F /dev/null", "StrictHostKeyChecking=yes", "IdentitiesOnly=yes", "ControlMaster=no",
                   "ControlPath=none", "BatchMode=yes", "-p 2222", f"-i {tmp_path / 'key'}"):
        assert option in command
    assert f"'UserKnownHostsFile={tmp_path / 'known hosts'}'" in command  # quoted for the shell git runs it with


@pytest.mark.parametrize(("ratio", "target", "shown"), [
    (1.05, 1.1, "PASS"), (1.1, 1.1, "PASS"), (1.3, 1.2, "MISS"), (None, 1.2, "not measured"), (1.5, None, "—"),
], ids=["under", "at", "over", "missing", "no-target"])
def test_verdict(ratio: float | None, target: float | None, shown: str) -> None:
    assert verdict(ratio, target) == shown


def test_main_table_compares_within_rounds() -> None:
    results = Results()
    for ours, ref in ((100.0, 90.0), (200.0, 200.0), (130.0, 100.0)):
        results.new_round()
        results.add(sc.FETCH, sc.OURS, ours)
        results.add(sc.FETCH, sc.REF, ref)
    lines = main_table(results, {(sc.FETCH, sc.OURS): 0.0375, (sc.FETCH, sc.REF): 0.029}).splitlines()
    assert lines[0].startswith("| operation | unit | ours median | ours p95 | reference median")
    assert lines[2] == ("| no-op fetch (protocol v2) | ms | 130 | 200 | 100 | 200 | 1.11× | ≤ 1.2× | PASS | 3/3 "
                        "| 37.5 | 29.0 |")
    assert lines[3].startswith("| clone, flask-sized | s | — | — | — | — | — | ≤ 1.1× | not measured | 0/0 | — | — |")


class Noisy:
    """A monitor stand-in: the next :meth:`take` reports a disturbed operation when ``noisy`` is set."""

    def __init__(self, always: bool = False) -> None:
        self.always = always
        self.noisy = False

    def take(self) -> list[Span]:
        spans = [Span(wall=0.2, others=0.2)] if self.noisy or self.always else [Span(wall=0.2, others=0.0)]
        self.noisy = False
        return spans


def bench_with(monitor: Noisy, runs_budget: float = 600.0) -> sc.Bench:
    nothing = cast(Any, None)
    sides = {key: sc.Side(key, nothing, str, Path) for key in (sc.OURS, sc.REF)}
    return sc.Bench(sc.Plan(budget=runs_budget), Path("/nonexistent"), Path("/nonexistent"), sides, nothing, nothing,
                    cast(Monitor, monitor), {sc.OURS: (1,), sc.REF: (2,)})


def test_a_disturbed_round_is_taken_again_and_its_samples_dropped() -> None:
    monitor = Noisy()
    bench = bench_with(monitor)
    seen = []
    for number, side in bench.rounds("fetch", (sc.OURS, sc.REF), 2):
        seen.append((number, side.key))
        bench.results.add(sc.FETCH, side.key, 100.0 + number)
        monitor.noisy = number == 0
    assert seen == [(0, sc.OURS), (0, sc.REF), (1, sc.REF), (1, sc.OURS), (2, sc.OURS), (2, sc.REF)]
    assert bench.results.samples[(sc.FETCH, sc.OURS)] == [101.0, 102.0]
    assert bench.done == {sc.OURS: 3, sc.REF: 3}  # server CPU counts the dropped round's work too
    assert bench.results.remarks == ["fetch: 1 disturbed round(s) taken again"]
    assert bench.disturbed == 1 and bench.timed == 6  # the stand-in has one span at each take


def test_a_machine_never_quiet_still_ends() -> None:
    bench = bench_with(Noisy(always=True))
    rounds = {number for number, _side in bench.rounds("clone", (sc.OURS, sc.REF), 2)}
    assert rounds == {0, 1, 2, 3}  # two taken again, then kept
    assert bench.results.count(sc.FETCH, sc.OURS) == 0 and bench.results.remarks


def test_rounds_stop_past_the_budget() -> None:
    bench = bench_with(Noisy(), runs_budget=0.0)
    assert [number for number, _side in bench.rounds("push", (sc.OURS, sc.REF), 5)] == [0, 0]
    assert bench.results.remarks[0].startswith("push: stopped after 1 of 5 rounds")


def test_presets() -> None:
    full, quick = parse_args([]).plan, parse_args(["--quick"]).plan
    assert (full.fetch_runs, full.clone_runs, full.push_runs, full.helper_runs, full.keys) == (30, 7, 15, 200, 10_000)
    assert quick.fetch_runs < full.fetch_runs and quick.keys == full.keys
    assert parse_args(["--keys", "100"]).plan.keys == 100


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "sshd needs root to switch to the git accounts"
    for path in (SSHD, GIT_SHELL):
        if not Path(path).exists():
            return f"{path} is not installed"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler for hostd-ssh"
    return None


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sc.Bench, str, int]]:
    """The whole benchmark once, tiny: (what it measured, its report, the fake keys that parse back)."""
    problem = _missing()
    if problem is not None:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("ssh-bench")
    source = root / "tiny.git"
    build_git(source, TINY_REPO)
    with contextlib.ExitStack() as cleanup:
        bench = run(TINY_PLAN, root / "work", source, Monitor(None), cleanup)
        text = render(bench, ["how"])
        parsed = sum(parse_public_key(f"{kind} {blob}").fingerprint == fingerprint
                     for kind, blob, fingerprint in bench.stack.sql("SELECT kind, blob, fingerprint FROM ssh_keys"))
    yield bench, text, parsed


@pytest.mark.e2e
def test_every_row_is_measured_with_a_finite_ratio(ran: tuple[sc.Bench, str, int]) -> None:
    bench, text, _parsed = ran
    assert bench.results.failures == []
    for metric, reference, _target in ROWS:
        ratio = bench.results.ratio(metric, sc.OURS, reference)
        assert ratio is not None and math.isfinite(ratio), metric
        assert f"| {metric.row} | {metric.unit} |" in text
    for reference in (sc.REF, sc.REF_MANY):
        ratio = bench.results.ratio(sc.FETCH_MANY, sc.OURS, reference)
        assert ratio is not None and math.isfinite(ratio)
    for metric in (sc.SPAWN_ONE, sc.HELPER_ONE, sc.SPAWN_MANY, sc.HELPER_MANY):
        assert bench.results.count(metric, sc.OURS) == TINY_PLAN.helper_runs
    assert bench.results.count(sc.PUSH, sc.REF) == TINY_PLAN.push_runs
    for metric, _reference, _target in ROWS:
        assert bench.cpu[(metric, sc.OURS)] >= 0 and bench.cpu[(metric, sc.REF)] >= 0
    assert (sc.FETCH_MANY, sc.OURS) in bench.cpu and (sc.FETCH_MANY, sc.REF) not in bench.cpu  # shares an sshd
    for part in ("# SSH: hostd against OpenSSH with git-shell\n\nhow\n", "## git over SSH",
                 "## Key lookup at 50 keys", "| no-op fetch, reference: authorized_keys of 51 lines, ours last |",
                 "| AuthorizedKeysCommand (hostd-ssh keys), 51 keys in ssh_keys |", "keys "):
        assert part in text
    assert "not measured" not in text and "## Failures" not in text
    assert " ms with our key alone, " in text and " ms with 51 keys" in text


@pytest.mark.e2e
def test_the_fake_keys_are_keys_hostd_would_store(ran: tuple[sc.Bench, str, int]) -> None:
    bench, _text, parsed = ran
    assert bench.stored_keys == TINY_PLAN.keys + 1 == parsed
