"""``hostd trust``: print, install, remove, each twice, against places of the test's own (never the machine's)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from hostd.ops import tls, trust
from hostd.ops.truststeps import Places
from tests.hostd.cli.conftest import run

Capsys = pytest.CaptureFixture[str]
UPDATE = shutil.which("update-ca-certificates", path="/usr/sbin:/sbin:/usr/bin")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An installation as far as ``hostd trust`` reads one: its secret and its certificates."""
    data = tmp_path / "var"
    tls.ensure_certificates(data / "tls")
    (data / "secret").write_bytes(secrets.token_bytes(32))
    return data


@pytest.fixture(autouse=True)
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    """This test's home and system store, whoever runs it (as root, the system store's steps)."""
    if UPDATE is None:
        pytest.skip("update-ca-certificates is not installed (Debian: ca-certificates)")
    local, etc = tmp_path / "local-certs", tmp_path / "etc-ssl-certs"
    for directory in (local, etc, tmp_path / "home"):
        directory.mkdir()
    chosen = Places(home=tmp_path / "home", system_certs=local, system_bundle=etc / "ca-certificates.crt",
                    hg_system=tmp_path / "hgrc.d",
                    update=(UPDATE, "--localcertsdir", str(local), "--etccertsdir", str(etc),
                            "--hooksdir", str(tmp_path / "no-hooks")))
    monkeypatch.setattr(trust.Places, "default", classmethod(lambda cls: chosen))
    return chosen


def test_no_installation_is_one_line_exit_1_and_creates_nothing(tmp_path: Path, capsys: Capsys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "typo"
    for argv in (["trust"], ["trust", "--install"], ["trust", "--remove"]):
        assert run(capsys, monkeypatch, [*argv, "--data", str(missing)]) == (
            1, "", f"hostd: no hostd installation at {missing} ({missing} does not exist); "
                   f"create one with: hostd init --data {missing}\n")
    assert not missing.exists()


@pytest.mark.parametrize("uid", [0, 1000], ids=["root: the system store", "a user: their git and hg"])
def test_print_install_remove_each_twice(uid: int, data: Path, places: Places, capsys: Capsys,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hostd.ops.trust.os.geteuid", lambda: uid)  # the places are the test's either way

    def hostd(*args: str) -> tuple[int, str, str]:
        return run(capsys, monkeypatch, ["trust", *args, "--data", str(data)])

    code, out, err = hostd()
    assert (code, err) == (0, "")
    assert "which this machine does not trust yet" in out and "hostd trust --install" in out
    assert list(places.home.iterdir()) == [] and list(places.system_certs.iterdir()) == []  # printing changes nothing
    code, out, err = hostd("--install")
    assert (code, err) == (0, "") and out.startswith("Done: ") and " trust https://127.0.0.1:8443/" in out
    assert bool(list(places.system_certs.iterdir())) == (uid == 0)
    assert (places.home / ".hgrc").exists() == (uid != 0)
    for args in ((), ("--install",)):
        code, out, _ = hostd(*args)
        assert code == 0 and out.startswith("Nothing to do: ")
    code, out, _ = hostd("--remove")
    assert code == 0 and out.startswith("Removed: ")
    assert list(places.system_certs.iterdir()) == [] and not (data / "tls" / "trusted").exists()
    assert hostd("--remove") == (0, "Nothing of this stack's to remove.\n", "")


def test_install_and_remove_together_is_a_usage_error(data: Path, capsys: Capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, monkeypatch, ["trust", "--install", "--remove", "--data", str(data)])
    assert code == 2 and err.splitlines()[-1] == "hostd: argument --remove: not allowed with argument --install"


def test_an_operators_certificate_of_a_private_ca_cannot_be_installed(data: Path, tmp_path: Path, capsys: Capsys,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """hostd did not issue it, so it does not know what to trust: it says so instead of guessing."""
    other = tls.ensure_certificates(tmp_path / "private-ca")
    monkeypatch.setenv("HOSTD_TLS_CERT", str(other.server_pem))
    monkeypatch.setenv("HOSTD_TLS_KEY", str(other.server_pem))
    code, out, err = run(capsys, monkeypatch, ["trust", "--install", "--data", str(data)])
    assert (code, out) == (1, "")
    assert err.startswith("hostd: https://127.0.0.1:8443/ presents HOSTD_TLS_CERT's certificate, which this "
                          "machine's trust store does not verify (self-signed certificate in certificate chain). "
                          "hostd did not issue it")
