"""SSH public keys: parsing what users give (checked against ``ssh-keygen``), and the ``ssh_keys`` table."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from hostd.names import RepoName
from hostd.store.accounts import AccountError, Accounts
from hostd.store.database import Database
from hostd.store.keys import LOOKUP, KeyGrant, KeyRejected, Keys, PublicKey, authorized_keys_line, parse_public_key

SSH_KEYGEN = shutil.which("ssh-keygen") or "ssh-keygen"


def keygen(directory: Path, kind: str, bits: int | None = None, comment: str = "alice@laptop") -> Path:
    """A new key pair made by ``ssh-keygen`` in ``directory``; the path of its ``.pub``."""
    path = directory / f"id_{kind}_{bits}_{len(list(directory.iterdir()))}"
    size = [] if bits is None else ["-b", str(bits)]
    subprocess.run([SSH_KEYGEN, "-q", "-N", "", "-t", kind, *size, "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=60)
    return path.with_suffix(".pub")


def ssh_fingerprint(pub: Path) -> str:
    """What ``ssh-keygen -lf`` says the key's fingerprint is."""
    done = subprocess.run([SSH_KEYGEN, "-lf", str(pub)], check=True, capture_output=True, text=True, timeout=60)
    return done.stdout.split()[1]


def string(*parts: bytes) -> bytes:
    """SSH wire strings (a uint32 length, then the bytes), one after another."""
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def mpint(value: int) -> bytes:
    """An SSH mpint's bytes (before its length): big-endian, a 0 in front when the top bit is set."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big") if value else b""


def line(kind: str, body: bytes, comment: str = "") -> str:
    return f"{kind} {base64.b64encode(body).decode()} {comment}".rstrip()


ED25519 = string(b"ssh-ed25519", bytes(range(32)))
ED = line("ssh-ed25519", ED25519)
P256 = b"\x04" + bytes(range(1, 65))
RSA_1024 = string(b"ssh-rsa", mpint(65537), mpint((1 << 1023) | 1))
DSA = string(b"ssh-dss", *(mpint(n) for n in ((1 << 1023) | 1, (1 << 159) | 1, 5, 7)))


@pytest.mark.parametrize(("kind", "bits"), [
    ("ed25519", None), ("ecdsa", 256), ("ecdsa", 384), ("ecdsa", 521), ("rsa", 2048), ("rsa", 3072),
], ids=["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048", "rsa3072"])
def test_keys_made_by_ssh_keygen_parse_with_its_fingerprint(tmp_path: Path, kind: str, bits: int | None) -> None:
    pub = keygen(tmp_path, kind, bits, comment="alice on her laptop")
    key = parse_public_key(pub.read_text())
    listed = subprocess.run([SSH_KEYGEN, "-lf", str(pub)], check=True, capture_output=True, text=True).stdout
    assert key.fingerprint == ssh_fingerprint(pub)
    assert key.bits == int(listed.split()[0]) == (bits or 256)
    assert (key.kind, key.blob) == tuple(pub.read_text().split()[:2])
    assert key.comment == "alice on her laptop"
    assert key.blob not in repr(key) and key.fingerprint in repr(key)


def real_p256_point(directory: Path) -> bytes:
    """The public point of a P-256 key ``ssh-keygen`` made (``ssh-keygen -l`` checks a point is on the curve)."""
    body = base64.b64decode(keygen(directory, "ecdsa", 256).read_text().split()[1])
    return body[-65:]


@pytest.mark.parametrize("kind", ["sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"],
                         ids=["sk-ed25519", "sk-ecdsa"])
def test_security_keys_parse_with_the_fingerprint_ssh_keygen_gives(tmp_path: Path, kind: str) -> None:
    if kind.startswith("sk-ssh-ed25519"):
        body = string(kind.encode(), bytes(range(32)), b"ssh:")
    else:
        body = string(kind.encode(), b"nistp256", real_p256_point(tmp_path), b"ssh:git")
    pub = tmp_path / "id_sk.pub"
    pub.write_text(line(kind, body, "yubikey") + "\n")
    key = parse_public_key(pub.read_text())
    assert (key.kind, key.bits, key.comment) == (kind, 256, "yubikey")
    assert key.fingerprint == ssh_fingerprint(pub)


@pytest.mark.parametrize("text", [
    ED, ED + "\n", ED + "\r\n", "  " + ED + " \n", ED.replace(" ", "\t"),
], ids=["bare", "newline", "crlf", "spaces", "tab"])
def test_a_line_may_have_a_newline_and_spaces_around_it(text: str) -> None:
    key = parse_public_key(text)
    assert (key.kind, key.bits, key.comment) == ("ssh-ed25519", 256, "")
    assert key.blob == ED.split()[1]


def test_a_comment_keeps_its_inner_spaces() -> None:
    assert parse_public_key(ED + " alice  on the   train\n").comment == "alice  on the   train"


REJECTED = [
    ("empty", "", "no key given"),
    ("blank", " \n\n", "no key given"),
    ("two-lines", f"{ED}\n{ED}\n", "more than one line: give one public key"),
    ("carriage-return", f"{ED}\r{ED}", "more than one line"),
    ("command", f'command="ls -l" {ED}', "authorized_keys options before the key are not accepted"),
    ("restrict", f"restrict {ED}", "authorized_keys options before the key are not accepted"),
    ("from", 'from="10.0.0.1" ssh-foo AAAA', "authorized_keys options before the key"),
    ("unknown", "ssh-foo AAAA", "unsupported key type 'ssh-foo' (supported: ssh-ed25519, "),
    ("certificate", line("ssh-ed25519-cert-v01@openssh.com", ED25519),
     "unsupported key type 'ssh-ed25519-cert-v01@openssh.com'"),
    ("dsa", line("ssh-dss", DSA), "DSA keys (ssh-dss) are refused as weak"),
    ("rsa-1024", line("ssh-rsa", RSA_1024), "RSA keys under 2048 bits are refused as weak (this one has 1024)"),
    ("rsa-huge", line("ssh-rsa", string(b"ssh-rsa", mpint(65537), mpint((1 << 16384) | 1))),
     "RSA keys over 16384 bits are more than OpenSSH accepts (this one has 16385)"),
    ("rsa-even-exponent", line("ssh-rsa", string(b"ssh-rsa", mpint(65536), mpint((1 << 2047) | 1))),
     "not an RSA public key"),
    ("negative", line("ssh-rsa", string(b"ssh-rsa", b"\x81", mpint((1 << 2047) | 1))), "negative number"),
    ("padded-number", line("ssh-rsa", string(b"ssh-rsa", b"\x00\x01\x00\x01", mpint((1 << 2047) | 1))),
     "not in its shortest form"),
    ("no-body", "ssh-ed25519", "no key body after the key type"),
    ("not-base64", "ssh-ed25519 AAAA!AAA", "the key body is not valid base64"),
    ("bad-padding", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "the key body is not valid base64"),
    ("other-type", line("ssh-rsa", ED25519), "the key body is a 'ssh-ed25519' key, not ssh-rsa"),
    ("garbage-type", line("ssh-ed25519", string(b"\xff\x00junk")), "the key body is a"),
    ("truncated", line("ssh-ed25519", ED25519[:-1]), "the key body is truncated"),
    ("truncated-length", line("ssh-ed25519", b"\0\0"), "the key body is truncated"),
    ("short-ed25519", line("ssh-ed25519", string(b"ssh-ed25519", bytes(31))), "an ed25519 key is 32 bytes"),
    ("trailing", line("ssh-ed25519", ED25519 + b"\0"), "trailing bytes after the key"),
    ("curve", line("ecdsa-sha2-nistp256", string(b"ecdsa-sha2-nistp256", b"nistp384", P256)),
     "the key body names curve 'nistp384', not nistp256"),
    ("compressed", line("ecdsa-sha2-nistp256", string(b"ecdsa-sha2-nistp256", b"nistp256", b"\x02" + bytes(32))),
     "not an uncompressed nistp256 point"),
    ("point-size", line("ecdsa-sha2-nistp384", string(b"ecdsa-sha2-nistp384", b"nistp384", P256)),
     "not an uncompressed nistp384 point"),
    ("sk-no-application", line("sk-ssh-ed25519@openssh.com", string(b"sk-ssh-ed25519@openssh.com", bytes(32), b"")),
     "the security key has no application"),
    ("sk-truncated", line("sk-ssh-ed25519@openssh.com", string(b"sk-ssh-ed25519@openssh.com", bytes(32))),
     "the key body is truncated"),
    ("escape-in-comment", ED + " alice\x1b[2J", "the key's comment has control characters"),
    ("tab-in-comment", ED + " alice\tbob", "the key's comment has control characters"),
    ("bidi-in-comment", ED + " alice\u202egnp.exe", "the key's comment has control characters"),
    ("too-long", "ssh-rsa " + "A" * 9000, "the line is too long for a public key"),
]


@pytest.mark.parametrize(("text", "reason"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_what_is_rejected_and_why(text: str, reason: str) -> None:
    with pytest.raises(KeyRejected) as raised:
        parse_public_key(text)
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 300


def test_weak_keys_made_by_ssh_keygen_are_rejected(tmp_path: Path) -> None:
    rsa = keygen(tmp_path, "rsa", 1024)
    with pytest.raises(KeyRejected, match="RSA keys under 2048 bits are refused as weak"):
        parse_public_key(rsa.read_text())
    try:
        dsa = keygen(tmp_path, "dsa")
    except subprocess.CalledProcessError:
        # This OpenSSH is built without DSA: the hand-made key of REJECTED stands in.
        dsa = tmp_path / "id_dsa.pub"
        dsa.write_text(line("ssh-dss", DSA, "old") + "\n")
    assert dsa.read_text().startswith("ssh-dss AAAAB3NzaC1kc3M")
    with pytest.raises(KeyRejected, match=r"DSA keys \(ssh-dss\) are refused as weak"):
        parse_public_key(dsa.read_text())


# --- the table -------------------------------------------------------------------

NOTES = RepoName("alice", "notes")


@pytest.fixture
def accounts(database: Database) -> Accounts:
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    accounts.add_user("bob", "bob's password")
    accounts.add_repo(NOTES, "git", False)
    return accounts


@pytest.fixture
def keys(database: Database, accounts: Accounts) -> Keys:
    del accounts
    return Keys(database)


def ed25519(seed: int, comment: str = "") -> PublicKey:
    """A distinct ed25519 key per seed (not a usable key pair: parsing and storing do not care)."""
    return parse_public_key(line("ssh-ed25519", string(b"ssh-ed25519", bytes([seed]) * 32), comment))


def test_a_user_key_is_found_by_its_fingerprint(keys: Keys) -> None:
    key = ed25519(1)
    record = keys.add("Alice", key, "laptop")
    assert (record.kind, record.bits, record.fingerprint, record.title) == ("ssh-ed25519", 256, key.fingerprint,
                                                                            "laptop")
    assert (record.username, record.repo, record.can_write, record.holder) == ("alice", None, False, "alice")
    assert record.created.tzinfo is not None
    assert keys.for_user("ALICE") == [record] and keys.for_user("bob") == []
    grant = keys.lookup(key.fingerprint)
    assert grant == KeyGrant(record.key_id, "ssh-ed25519", key.blob, "alice", None, False)
    # Reprs name the key, never its body.
    assert key.blob not in repr(grant) and key.blob not in repr(record) and key.fingerprint in repr(record)


def test_a_deploy_key_reaches_its_repository_read_only_unless_written(keys: Keys) -> None:
    reader = keys.add_deploy(NOTES, ed25519(1), "ci", write=False)
    writer = keys.add_deploy(NOTES, ed25519(2), "deploy", write=True)
    assert (reader.username, reader.repo, reader.can_write) == (None, NOTES, False)
    assert writer.can_write and writer.holder == "deploy key of alice/notes"
    assert keys.for_repo(NOTES) == [reader, writer] and keys.for_user("alice") == []
    grant = keys.lookup(writer.fingerprint)
    assert grant is not None and (grant.username, grant.repo, grant.can_write) == (None, NOTES, True)


def test_unknown_fingerprints_find_nothing(keys: Keys) -> None:
    keys.add("alice", ed25519(1), "")
    assert keys.lookup(ed25519(2).fingerprint) is None
    for malformed in ("", "SHA256:", "MD5:aa:bb", ed25519(1).fingerprint + "=", ed25519(1).fingerprint + "\n"):
        assert keys.lookup(malformed) is None


def test_a_key_is_stored_once_in_the_whole_table(keys: Keys) -> None:
    key = ed25519(1)
    keys.add("alice", key, "first")
    with pytest.raises(KeyRejected, match="^this key is already in use$"):
        keys.add("alice", key, "again")
    with pytest.raises(KeyRejected, match="^this key is already in use$"):
        keys.add("bob", key, "")
    with pytest.raises(KeyRejected, match="^this key is already in use$"):
        keys.add_deploy(NOTES, key, "", write=True)
    deploy = ed25519(2)
    keys.add_deploy(NOTES, deploy, "", write=False)
    with pytest.raises(KeyRejected, match="already in use"):
        keys.add("bob", deploy, "")
    assert [r.title for r in keys.for_user("alice")] == ["first"] and keys.for_user("bob") == []


@pytest.mark.parametrize(("call", "message"), [
    (lambda keys: keys.add("carol", ed25519(1), ""), "no such user: carol"),
    (lambda keys: keys.add("../x", ed25519(1), ""), "invalid user name: '../x'"),
    (lambda keys: keys.add_deploy(RepoName("alice", "nope"), ed25519(1), "", write=False),
     "no such repository: alice/nope"),
    (lambda keys: keys.for_user("carol"), "no such user: carol"),
    (lambda keys: keys.for_repo(RepoName("bob", "nope")), "no such repository: bob/nope"),
    (lambda keys: keys.add("alice", ed25519(1), "x" * 101), "title is at most 100 characters"),
    (lambda keys: keys.add("alice", ed25519(1), "a\nb"), "no control characters"),
], ids=["user", "user-name", "repo", "list-user", "list-repo", "title-long", "title-control"])
def test_what_cannot_be_done_says_why(keys: Keys, call: object, message: str) -> None:
    with pytest.raises(AccountError, match=message):
        call(keys)  # type: ignore[operator]
    assert keys.lookup(ed25519(1).fingerprint) is None


def test_a_deleted_key_is_gone(keys: Keys) -> None:
    record = keys.add("alice", ed25519(1), "laptop")
    assert keys.delete(record.key_id) == record
    assert keys.delete(record.key_id) is None and keys.delete(10**30) is None
    assert keys.lookup(record.fingerprint) is None and keys.for_user("alice") == []
    keys.add("bob", ed25519(1), "")  # free to be added again


def test_keys_go_with_their_user_or_repository(keys: Keys, accounts: Accounts) -> None:
    bobs = keys.add("bob", ed25519(1), "")
    deploy = keys.add_deploy(NOTES, ed25519(2), "", write=True)
    alices = keys.add("alice", ed25519(3), "")
    accounts.delete_user("bob")
    assert keys.lookup(bobs.fingerprint) is None
    accounts.delete_repo(NOTES)
    assert keys.lookup(deploy.fingerprint) is None
    # A user re-created under the same name, or a repository, gets none of the old keys.
    accounts.add_user("bob", "bob's new password")
    accounts.add_repo(NOTES, "git", False)
    assert keys.for_user("bob") == [] and keys.for_repo(NOTES) == []
    assert keys.lookup(alices.fingerprint) is not None


@pytest.mark.parametrize(("holder", "write"), [
    ("'alice', 'alice', 'notes'", False), ("NULL, NULL, NULL", False), ("NULL, 'alice', NULL", False),
    ("'alice', NULL, NULL", True),
], ids=["both", "neither", "half-a-repository", "writing-user-key"])
def test_the_table_holds_each_key_for_exactly_one_holder(database: Database, keys: Keys, holder: str,
                                                         write: bool) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), database.connection() as conn:
        conn.execute("INSERT INTO ssh_keys (username, repo_owner, repo_name, can_write, kind, blob, fingerprint,"
                     f" bits) VALUES ({holder}, %s, 'ssh-ed25519', 'AAAA', 'SHA256:x', 256)", (write,))


def test_the_lookup_is_one_indexed_query(database: Database, keys: Keys) -> None:
    target = keys.add("alice", ed25519(1), "")
    with database.connection() as conn:
        conn.execute("""
            INSERT INTO ssh_keys (username, kind, blob, fingerprint, bits)
            SELECT 'bob', 'ssh-ed25519', 'AAAA', 'SHA256:' || rtrim(encode(sha256(i::text::bytea), 'base64'), '='), 256
              FROM generate_series(1, 2000) AS i
        """)
        conn.execute("ANALYZE ssh_keys")
        plan = "\n".join(row["QUERY PLAN"] for row in conn.execute("EXPLAIN " + LOOKUP, (target.fingerprint,)))
    assert "Index Scan using ssh_keys_fingerprint on ssh_keys" in plan or "Index Only Scan" in plan, plan
    assert "Seq Scan" not in plan
    assert keys.lookup(target.fingerprint) is not None


def test_the_authorized_keys_line_forces_hostds_command() -> None:
    grant = KeyGrant(7, "ssh-ed25519", ED.split()[1], "alice", None, False)
    assert authorized_keys_line(grant, "/srv/hostd/bin/hostd-shell key-7") == (
        f'restrict,command="/srv/hostd/bin/hostd-shell key-7" ssh-ed25519 {ED.split()[1]}')
    for command in ("", 'x" ssh-rsa', "x\\", "x\ny", "x\0", "x\x7f", "x\x85"):
        with pytest.raises(ValueError, match="forced command"):
            authorized_keys_line(grant, command)
    # A row changed by hand cannot smuggle a second line or option through.
    for kind, blob in (("ssh-ed25519", "AAAA\nssh-ed25519 BBBB"), ("ssh-ed25519 AAAA\n", "AAAA"), ("x", "AAAA")):
        with pytest.raises(ValueError, match="not a key hostd stores"):
            authorized_keys_line(KeyGrant(7, kind, blob, "alice", None, False), "hostd-shell")
