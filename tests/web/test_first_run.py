"""The first run, as a new user meets it: a fresh clone, ``make run``, and what it prints, followed literally.

The user's shell is the test's: ``HOME`` of its own (so ``~/.gitconfig`` and
``~/.hgrc`` are the test's) and ``GIT_SSL_CAINFO`` naming the system bundle,
as on many CI images, which replaces any ``http.sslCAInfo`` a clone keeps. The
printed trust step, then the printed ``git clone`` and ``hg clone``, are run as
printed; then ``pull`` and ``push`` in both clones, signed in as the demo user
through git's credential store and hg's ``[auth]``, as a user would. Then
Ctrl-C (SIGINT to ``make run``'s process group) must stop everything.

Run as root, the trust step changes the machine's trust store (that is what
it is for): ``hostd trust --remove`` in ``finally`` takes this stack's CA out again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from hostd.ops import stack, trust
from hostd.settings import Ports, Settings
from tests import pg
from tests.e2e.stackfixture import processes
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
TRUST = "First, trust this stack's certificate (once): "
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def fresh_clone(target: Path) -> None:
    """``git clone`` of this checkout, with its uncommitted work laid over it: what is tested is what is here.

    The clone's ``.venv`` links to this checkout's virtualenv, with an install stamp of its own: ``make
    run`` skips ``pip install -e .`` (minutes), so the ``hostd`` script imports this checkout's hostd
    (the editable install), the same working tree the clone copies; ``python -m`` in the clone imports
    the clone's.
    """
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(target)], check=True, timeout=120)
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, copy = ROOT / name, target / name
        if source.is_file() or source.is_symlink():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy, follow_symlinks=False)
        else:  # deleted in the working tree
            copy.unlink(missing_ok=True)
    venv = target / ".venv"
    venv.mkdir()
    for entry in (ROOT / ".venv").iterdir():
        if not entry.name.startswith("."):
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    dry = subprocess.run(["make", "-n", "run"], cwd=target, capture_output=True, text=True, timeout=60)
    # Were the Makefile to install anyway, it would install into this checkout's virtualenv: stop instead.
    assert "pip install" not in dry.stdout, f"make run would reinstall the virtualenv:\n{dry.stdout}"


def user_environment(tmp_path: Path) -> dict[str, str]:
    """A new user's shell: no HOSTD_* but the ports and data directory, a home of its own, GIT_SSL_CAINFO set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HOSTD_", "HG", "GIT_CONFIG", "GIT_TERMINAL"))}
    names = [f"HOSTD_{name.upper()}_PORT" for name in Ports.__dataclass_fields__]
    env.update(zip(names, map(str, free_ports(len(names))), strict=True))
    env.update(HOSTD_DATA=str(tmp_path / "data"), HOME=str(tmp_path / "home"), GIT_SSL_CAINFO=SYSTEM_BUNDLE,
               GIT_TERMINAL_PROMPT="0", LANG="C.UTF-8",
               # The user has hg somewhere on their PATH; here it is the virtualenv's.
               PATH=f"/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:{ROOT / '.venv' / 'bin'}",
               **pg.stack_environment())
    return env


def sh(command: str, cwd: Path, env: dict[str, str]) -> str:
    """Run one line as the user would type it; its output, or AssertionError with it."""
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def clones_for_one_user(settings: Settings, clones: list[str], root: Path, env: dict[str, str]) -> None:
    """What ``hostd trust --install`` does for a user who is not root (their git and hg, for this server),
    tried on the running stack: the printed clones and a pull each, with GIT_SSL_CAINFO still set."""
    home, work = root / "home", root / "work"
    home.mkdir(parents=True)
    work.mkdir()
    places = trust.Places(home=home)
    plan = trust.plan(settings, trust.facts(settings, places, root=False), places)
    trust.apply(plan.install, places)
    try:
        user = dict(env, HOME=str(home))
        for command in clones:
            sh(command, work, user)
        sh("git pull", work / "hello", user)
        sh("hg pull", work / "hello-hg", user)
    finally:
        trust.apply(trust.plan(settings, trust.facts(settings, places, root=False), places).remove, places)


class Output:
    """``make run``'s output, read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.process = process
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for line in self.lines):
            assert self.process.poll() is None, "make run exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {prefix!r} within {timeout}s:\n" + "\n".join(self.lines)
            time.sleep(0.2)


def test_first_run_printed_commands_clone_pull_and_push(tmp_path: Path) -> None:
    checkout, work, home = tmp_path / "hostd", tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    fresh_clone(checkout)
    env = user_environment(tmp_path)
    settings = Settings.from_env(env)
    pg.reachable(tmp_path)  # run as root, the stack's PostgreSQL runs as postgres and must reach data/
    process = subprocess.Popen(["make", "run"], cwd=checkout, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = Output(process)
    trusted = False
    try:
        output.wait_for("Web: ", timeout=150)
        announced = output.lines[next(i for i, line in enumerate(output.lines) if line == "hostd is up."):]
        steps = [line.removeprefix(TRUST) for line in announced if line.startswith(TRUST)]
        # The clone's own script, and --data: the data directory is not the clone's var/.
        hostd = checkout / ".venv" / "bin" / "hostd"
        assert steps == [shlex.join([str(hostd), "--data", str(settings.data_dir), "trust", "--install"])], \
            "\n".join(announced)
        clones = [line.strip() for line in announced if line.startswith(("  git clone https:", "  hg clone https:"))]
        base = settings.base_url
        assert clones == [f"git clone {base}/demo/hello.git", f"hg clone {base}/demo/hello-hg"], "\n".join(announced)

        if os.geteuid() == 0:  # the trust step below takes the system store: try the other way first
            clones_for_one_user(settings, clones, tmp_path / "another", env)

        trusted = True
        sh(steps[0], work, env)
        for command in clones:
            sh(command, work, env)

        password = (settings.data_dir / "demo-password").read_text().strip()
        (home / ".git-credentials").write_text(f"https://demo:{password}@{settings.public_host}:"
                                               f"{settings.ports.https}\n")
        (home / ".git-credentials").chmod(0o600)
        sh("git config --global credential.helper store && git config --global user.name 'New User' && "
           "git config --global user.email new@example.com", work, env)
        with (home / ".hgrc").open("a") as hgrc:
            hgrc.write(f"[ui]\nusername = New User <new@example.com>\n[auth]\ndemo.prefix = {settings.base_url}\n"
                       f"demo.username = demo\ndemo.password = {password}\n")
        git, hg = work / "hello", work / "hello-hg"
        sh("git pull", git, env)
        (git / "NOTES").write_text("first push\n")
        sh("git add NOTES && git commit -qm 'First push' && git push", git, env)
        assert "First push" in sh("git pull && git log -1 --format=%s origin/HEAD", git, env)
        sh("hg pull", hg, env)
        (hg / "NOTES").write_text("first push\n")
        sh("hg add NOTES && hg commit -m 'First push' && hg push", hg, env)
        assert "no changes found" in sh("hg pull", hg, env)  # what was pushed is there, and pull still verifies

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal that runs make run
        process.wait(timeout=90)
        output.thread.join(timeout=10)
        assert process.returncode in (0, -signal.SIGINT), "\n".join(output.lines)
        assert not any("Traceback" in line for line in output.lines), "\n".join(output.lines)
        assert stack.supervisord_pid(settings) is None
        left = [b" ".join(args) for _, args, _ in processes() if str(settings.data_dir).encode() in b" ".join(args)]
        assert left == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=90)
        if trusted:
            # What the trust step put into the machine's trust store (as root) or this home goes again.
            admin = [str(checkout / ".venv" / "bin" / "hostd"), "--data", str(settings.data_dir)]
            subprocess.run([*admin, "trust", "--remove"], env=env, check=True, capture_output=True, timeout=300)
            assert not (trust.Places.default().system_certs / f"{trust.name(settings)}.crt").exists()
            ca = (settings.tls_dir / "ca.pem").read_text()
            assert ca not in Path(SYSTEM_BUNDLE).read_text()
