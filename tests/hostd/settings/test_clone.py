"""What users are told to type to clone, and the operator's certificate settings (``HOSTD_TLS_CERT``/``KEY``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostd.settings import Settings, SettingsError
from hostd.settings.clone import CloneHelp, clone_help, trust_step

CASES = {
    "git": ({}, "demo/hello", "git",
            CloneHelp("git clone https://127.0.0.1:8443/demo/hello.git",
                      "git clone ssh://git@127.0.0.1:2222/demo/hello.git")),
    "hg": ({}, "demo/hello-hg", "hg",
           CloneHelp("hg clone https://127.0.0.1:8443/demo/hello-hg", "hg clone ssh://hg@127.0.0.1:2222/demo/hello-hg")),
    "public host and ports": ({"HOSTD_PUBLIC_HOST": "git.example.com", "HOSTD_HTTPS_PORT": "443",
                               "HOSTD_SSH_PORT": "22"}, "alice/notes", "git",
                              CloneHelp("git clone https://git.example.com:443/alice/notes.git",
                                        "git clone ssh://git@git.example.com:22/alice/notes.git")),
    "IPv6": ({"HOSTD_BIND": "::1"}, "alice/notes", "hg",
             CloneHelp("hg clone https://[::1]:8443/alice/notes", "hg clone ssh://hg@[::1]:2222/alice/notes")),
}


@pytest.mark.parametrize(("env", "repo", "vcs", "expected"), CASES.values(), ids=CASES.keys())
def test_clone_commands_are_plain(env: dict[str, str], repo: str, vcs: str, expected: CloneHelp) -> None:
    assert clone_help(Settings.from_env(env), repo, vcs) == expected


def test_the_trust_step_comes_first_in_one_sentence() -> None:
    help = clone_help(Settings.from_env({}), "demo/hello", "git", trust_command="hostd trust --install")
    assert help.trust == trust_step("hostd trust --install") == (
        "First, trust this stack's certificate (once): hostd trust --install")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'svn' is not one of git, hg"):
        clone_help(Settings.from_env({}), "demo/hello", "svn")


def test_the_operators_certificate_and_key_go_together() -> None:
    given = Settings.from_env({"HOSTD_TLS_CERT": "/etc/ssl/live/fullchain.pem", "HOSTD_TLS_KEY": "/etc/ssl/k.pem"})
    assert (given.tls_cert, given.tls_key) == (Path("/etc/ssl/live/fullchain.pem"), Path("/etc/ssl/k.pem"))
    assert (Settings.from_env({}).tls_cert, Settings.from_env({"HOSTD_TLS_CERT": " "}).tls_key) == (None, None)


@pytest.mark.parametrize(("env", "message"), [
    ({"HOSTD_TLS_CERT": "/c.pem"}, "HOSTD_TLS_CERT and HOSTD_TLS_KEY go together"),
    ({"HOSTD_TLS_KEY": "/k.pem"}, "HOSTD_TLS_CERT and HOSTD_TLS_KEY go together"),
    ({"HOSTD_TLS_CERT": "c.pem", "HOSTD_TLS_KEY": "/k.pem"}, "HOSTD_TLS_CERT='c.pem' is not an absolute path"),
], ids=["cert alone", "key alone", "relative"])
def test_half_or_relative_tls_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
