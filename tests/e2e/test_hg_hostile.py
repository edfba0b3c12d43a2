"""The real hg client against the real stack where it used to end badly.

An anonymous push to a public repository must end in hg's own "authorization
required" (the prompt an interactive user answers), not a TLS EOF: hg sends
the whole bundle before it reads the answer, so the hg pool reads a refused
write to its end (up to the push limit) before it answers 401. Wire commands
with bogus arguments, which used to answer 500 (or cut a stream short), get a
4xx through HAProxy (the whole table is in ``tests/hostd/hg/test_app.py``).
"""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack

PASSWORD = "hostile but honest"
BUNDLE_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def public_hg(stack: Stack) -> str:
    owner = f"harriet{uuid.uuid4().hex[:6]}"
    stack.add_user(owner, PASSWORD)
    repo = f"{owner}/open"
    stack.hostd("repo", "create", repo, "--vcs", "hg", "--public")
    return repo


def _tip(stack: Stack, work: Path) -> str:
    return stack.clients.hg("log", "-r", "tip", "-T", "{node}", cwd=work).stdout.strip()


def test_anonymous_push_of_a_large_bundle_ends_in_the_password_prompt(
    stack: Stack, public_hg: str, tmp_path: Path
) -> None:
    hg = stack.clients.hg
    url = stack.url(public_hg)
    work = tmp_path / "work"
    hg("clone", url, str(work))
    # Random bytes: the bundle hg sends stays about 4 MiB, whatever it compresses with.
    (work / "blob.bin").write_bytes(os.urandom(BUNDLE_BYTES))
    hg("commit", "-A", "-m", "a large file", cwd=work)

    refused = hg("push", url, cwd=work, check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "http authorization required" in output, output
    assert "EOF" not in output, output

    # The same URL with credentials configured the way hg users do ([auth]):
    # hg is challenged on the same push, answers, and the push lands.
    owner = public_hg.split("/")[0]
    hg("push", url, "--config", f"auth.hostd.prefix={url}", "--config", f"auth.hostd.username={owner}",
       "--config", f"auth.hostd.password={PASSWORD}", cwd=work)
    hg("clone", url, str(tmp_path / "again"))
    assert _tip(stack, tmp_path / "again") == _tip(stack, work)
    assert (tmp_path / "again" / "blob.bin").stat().st_size == BUNDLE_BYTES


UNKNOWN_NODE = "0123456789abcdef0123456789abcdef01234567"


def _hg_request(stack: Stack, path: str) -> tuple[int, bytes]:
    """A GET with an hg client's headers through HAProxy, anonymous."""
    context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
    request = urllib.request.Request(stack.url(path), headers={
        "User-Agent": "mercurial/proto-1.0 (Mercurial 7.2)", "Accept": "application/mercurial-0.1"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


@pytest.mark.parametrize(("query", "status"), [
    (f"cmd=changegroup&roots={UNKNOWN_NODE}", 404),
    ("cmd=changegroupsubset&bases=&heads=", 400),
    ("cmd=get_cached_bundle_inline&path=/etc/passwd", 404),
    ("cmd=batch&cmds=stream_out+", 400),
    ("cmd=getbundle&bundlecaps=HG20&listkeys=" + "n" * 300, 400),
], ids=["unknown-root", "empty-revsets", "inline-bundle-outside", "batched-stream", "long-listkeys"])
def test_bogus_wire_arguments_get_a_4xx_through_the_stack(stack: Stack, public_hg: str, query: str,
                                                          status: int) -> None:
    code, body = _hg_request(stack, f"{public_hg}?{query}")
    assert code == status, body
    assert b"Traceback" not in body
