"""SSH public keys: parsing the line a user gives, and the ``ssh_keys`` table (migration 0006).

A key is a user's (it acts as them, with their access) or a deploy key of
one repository (read-only unless added with ``write``). sshd finds the key
a client offers by its fingerprint (``AuthorizedKeysCommand ... %f``), and
:meth:`Keys.lookup` answers with one indexed query; the answer becomes the
one ``authorized_keys`` line sshd reads, with hostd's own options::

    key = parse_public_key(Path("id_ed25519.pub").read_text())   # KeyRejected says why not
    keys = Keys(db)
    keys.add("alice", key, title="laptop")
    keys.add_deploy(RepoName("alice", "notes"), key2, title="ci", write=False)
    grant = keys.lookup("SHA256:2hWn9wMC4ncWLdk14LNI/ATMMjVZxfFq7x8RdLFC2v8")
    if grant is not None:
        print(authorized_keys_line(grant, "hostd-shell key-7"))

A key is stored once in the whole table: the same key cannot be two users',
nor a user's and a deploy key, so a fingerprint names exactly one grant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from hostd.names import RepoName, normalize_name
from hostd.store.accounts import AccountError
from hostd.store.database import Connection, Database


class KeyRejected(AccountError):
    """A public key hostd will not store; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A parsed public key: what :func:`parse_public_key` checked, in OpenSSH's canonical form."""

    #: The key type, as the line and the key body both name it (``ssh-ed25519``).
    kind: str
    #: The key body in base64, as ``authorized_keys`` spells it.
    blob: str = field(repr=False)
    #: ``SHA256:`` and the unpadded base64 of the body's SHA-256, as ``ssh-keygen -l`` and sshd's ``%f`` give it.
    fingerprint: str
    bits: int
    comment: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One row of ``ssh_keys``, as the admin sees it (never the key body)."""

    key_id: int
    kind: str
    bits: int
    fingerprint: str
    title: str
    #: The user whose key it is; None for a deploy key.
    username: str | None
    #: The repository of a deploy key; None for a user's key.
    repo: RepoName | None
    #: Whether a deploy key may push (always False for a user's key: it has the user's access).
    can_write: bool
    created: datetime

    @property
    def holder(self) -> str:
        """Whose key it is, for a message: ``alice`` or ``deploy key of alice/notes``."""
        return self.username if self.username is not None else f"deploy key of {self.repo}"


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What a key lets its holder do, as :meth:`Keys.lookup` finds it for sshd."""

    key_id: int
    kind: str
    blob: str = field(repr=False)
    #: The user the key logs in as; None for a deploy key.
    username: str | None
    #: The one repository a deploy key reaches; None for a user's key.
    repo: RepoName | None
    #: A deploy key's permission to push; a user's key has the user's access, and this is False.
    can_write: bool


# --- parsing -----------------------------------------------------------------

#: A line longer than this is no public key (an RSA key of 16384 bits is under 3000 characters).
MAX_LINE: Final = 8192
#: RSA keys below this are refused as weak; above OpenSSH's own limit, as unusable.
RSA_MIN_BITS: Final = 2048
RSA_MAX_BITS: Final = 16384
MAX_TITLE: Final = 100
_FINGERPRINT: Final = re.compile(r"SHA256:[A-Za-z0-9+/]{43}\Z")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}\Z")
_CURVES: Final = {"nistp256": 256, "nistp384": 384, "nistp521": 521}
_REFUSED: Final = {
    "ssh-dss": "DSA keys (ssh-dss) are refused as weak: use an ed25519 key (ssh-keygen -t ed25519)",
}


class _Reader:
    """The SSH wire format of a key body (RFC 4251): length-prefixed strings and mpints."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def string(self) -> bytes:
        if len(self._data) - self._at < 4:
            raise KeyRejected("the key body is truncated")
        size = int.from_bytes(self._data[self._at:self._at + 4], "big")
        start = self._at + 4
        if size > len(self._data) - start:
            raise KeyRejected("the key body is truncated")
        self._at = start + size
        return self._data[start:self._at]

    def mpint(self) -> int:
        raw = self.string()
        if raw[:1] and raw[0] & 0x80:
            raise KeyRejected("the key body has a negative number")
        # Protocol: sshd fingerprints the key it re-encodes, in the shortest
        # form; a padded number would be stored under a fingerprint no login has.
        if raw[:1] == b"\0" and (len(raw) == 1 or not raw[1] & 0x80):
            raise KeyRejected("the key body has a number not in its shortest form")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self._at != len(self._data):
            raise KeyRejected("the key body has trailing bytes after the key")


def _rsa(reader: _Reader) -> int:
    exponent, modulus = reader.mpint(), reader.mpint()
    bits = modulus.bit_length()
    if exponent < 3 or exponent % 2 == 0 or modulus % 2 == 0:
        raise KeyRejected("the key body is not an RSA public key")
    if bits < RSA_MIN_BITS:
        raise KeyRejected(f"RSA keys under {RSA_MIN_BITS} bits are refused as weak (this one has {bits})")
    if bits > RSA_MAX_BITS:
        raise KeyRejected(f"RSA keys over {RSA_MAX_BITS} bits are more than OpenSSH accepts (this one has {bits})")
    return bits


def _ed25519(reader: _Reader) -> int:
    if len(reader.string()) != 32:
        raise KeyRejected("an ed25519 key is 32 bytes")
    return 256


def _ecdsa(curve: str) -> Callable[[_Reader], int]:
    bits = _CURVES[curve]

    def parse(reader: _Reader) -> int:
        named = reader.string()
        if named != curve.encode():
            raise KeyRejected(f"the key body names curve {_shown(named)}, not {curve}")
        point = reader.string()
        # Protocol: only the uncompressed point (0x04, x, y), which is what
        # sshd re-encodes and fingerprints. Whether it is on the curve is for
        # sshd to check: a point that is not can never sign a login.
        if len(point) != 1 + 2 * ((bits + 7) // 8) or point[0] != 4:
            raise KeyRejected(f"the key body is not an uncompressed {curve} point")
        return bits
    return parse


def _security_key(parse: Callable[[_Reader], int]) -> Callable[[_Reader], int]:
    """A FIDO key (``sk-``): the key, then the application it was made for (``ssh:``)."""
    def parse_sk(reader: _Reader) -> int:
        bits = parse(reader)
        if not reader.string():
            raise KeyRejected("the security key has no application")
        return bits
    return parse_sk


#: Every key type hostd stores, and how to read the rest of its body (returning its size in bits).
KINDS: Final[dict[str, Callable[[_Reader], int]]] = {
    "ssh-ed25519": _ed25519,
    "sk-ssh-ed25519@openssh.com": _security_key(_ed25519),
    "ecdsa-sha2-nistp256": _ecdsa("nistp256"),
    "ecdsa-sha2-nistp384": _ecdsa("nistp384"),
    "ecdsa-sha2-nistp521": _ecdsa("nistp521"),
    "sk-ecdsa-sha2-nistp256@openssh.com": _security_key(_ecdsa("nistp256")),
    "ssh-rsa": _rsa,
}


def parse_public_key(text: str) -> PublicKey:
    """Parse one public key as a ``.pub`` file or an ``authorized_keys`` line has it.

    ``TYPE BASE64 [COMMENT]``: spaces and a trailing newline around it are
    fine, and the comment may have spaces. :class:`KeyRejected` with the
    reason for anything else: no key, more than one line, ``authorized_keys``
    options before the key (hostd writes its own), a type not in
    :data:`KINDS` (DSA and RSA under 2048 bits as weak), a body that is not
    base64, names another type, or is truncated or followed by more bytes.
    A comment with control or invisible formatting characters is refused,
    not stripped: it becomes the key's title, shown to admins in a terminal.
    """
    line = text.strip(" \t\r\n")
    if not line:
        raise KeyRejected("no key given")
    if "\n" in line or "\r" in line:
        raise KeyRejected("more than one line: give one public key")
    if len(line) > MAX_LINE:
        raise KeyRejected(f"the line is too long for a public key (over {MAX_LINE} characters)")
    fields = re.split(r"[ \t]+", line, maxsplit=2)
    kind = fields[0]
    if kind in _REFUSED:
        raise KeyRejected(_REFUSED[kind])
    if kind not in KINDS:
        if _has_options(line):
            raise KeyRejected("authorized_keys options before the key are not accepted (hostd writes its own)")
        raise KeyRejected(f"unsupported key type {_shown(kind)} (supported: {', '.join(KINDS)})")
    if len(fields) < 2:
        raise KeyRejected("no key body after the key type")
    try:
        raw = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeyRejected("the key body is not valid base64") from None
    reader = _Reader(raw)
    named = reader.string()
    if named != kind.encode():
        raise KeyRejected(f"the key body is a {_shown(named)} key, not {kind}")
    bits = KINDS[kind](reader)
    reader.end()
    comment = fields[2] if len(fields) > 2 else ""
    if _unprintable(comment):
        raise KeyRejected("the key's comment has control characters")
    return PublicKey(kind, base64.b64encode(raw).decode("ascii"), fingerprint(raw), bits, comment)


def fingerprint(raw: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a key body (``ssh-keygen -l``, sshd's ``%f``)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def _has_options(line: str) -> bool:
    """Whether a line that does not start with a key type has one later: options came first."""
    first, *rest = re.split(r"[ \t]+", line)
    return any(c in first for c in '=,"') or any(word in KINDS or word in _REFUSED for word in rest)


def _unprintable(text: str) -> bool:
    # Cc: C0, DEL, C1; Cf: invisible formatting (bidi overrides that reorder
    # what a listing shows); Zl, Zp: line breaks of their own; Cs: undecodable bytes.
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in text)


def _shown(value: str | bytes) -> str:
    """A name from untrusted input, quoted and cut short for a one-line message."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


# --- the table ---------------------------------------------------------------

_COLUMNS: Final = "id, kind, bits, fingerprint, title, username, repo_owner, repo_name, can_write, created"
#: What :meth:`Keys.lookup` runs: one row by the unique index on ``fingerprint``.
LOOKUP: Final = "SELECT id, kind, blob, username, repo_owner, repo_name, can_write FROM ssh_keys WHERE fingerprint = %s"


class Keys:
    """The ``ssh_keys`` table: adding, listing and deleting keys, and finding one for sshd."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, username: str, key: PublicKey, title: str) -> KeyRecord:
        """Give a user a key; it logs in as them. KeyRejected if the key is stored already."""
        title = _title(title)
        with self.db.transaction() as conn:
            name = _existing_user(conn, username)
            return _insert(conn, key, title, username=name)

    def add_deploy(self, repo: RepoName, key: PublicKey, title: str, write: bool) -> KeyRecord:
        """Give one repository a deploy key: it fetches from it, and pushes if ``write``."""
        title = _title(title)
        with self.db.transaction() as conn:
            # Locked like a foreign key would, so a concurrent delete waits and then cascades.
            if conn.execute("SELECT 1 FROM repos WHERE owner = %s AND name = %s FOR KEY SHARE",
                            (repo.owner, repo.name)).fetchone() is None:
                raise AccountError(f"no such repository: {repo}")
            return _insert(conn, key, title, repo=repo, write=write)

    def for_user(self, username: str) -> list[KeyRecord]:
        """A user's keys, oldest first."""
        with self.db.transaction() as conn:
            name = _existing_user(conn, username)
            rows = conn.execute(f"SELECT {_COLUMNS} FROM ssh_keys WHERE username = %s ORDER BY id",
                                (name,)).fetchall()
        return [_record(row) for row in rows]

    def for_repo(self, repo: RepoName) -> list[KeyRecord]:
        """A repository's deploy keys, oldest first."""
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM repos WHERE owner = %s AND name = %s",
                            (repo.owner, repo.name)).fetchone() is None:
                raise AccountError(f"no such repository: {repo}")
            rows = conn.execute(f"SELECT {_COLUMNS} FROM ssh_keys WHERE repo_owner = %s AND repo_name = %s"
                                " ORDER BY id", (repo.owner, repo.name)).fetchall()
        return [_record(row) for row in rows]

    def delete(self, key_id: int) -> KeyRecord | None:
        """Delete a key by its id; what was deleted, or None if there was no such key."""
        with self.db.connection() as conn:
            row = conn.execute(f"DELETE FROM ssh_keys WHERE id = %s RETURNING {_COLUMNS}", (key_id,)).fetchone()
        return None if row is None else _record(row)

    def lookup(self, fingerprint: str) -> KeyGrant | None:
        """The grant of the key with this fingerprint (sshd's ``%f``), or None.

        A fingerprint not in OpenSSH's SHA256 form is None without a query.
        """
        if not _FINGERPRINT.match(fingerprint):
            return None
        with self.db.connection() as conn:
            row = conn.execute(LOOKUP, (fingerprint,)).fetchone()
        if row is None:
            return None
        return KeyGrant(row["id"], row["kind"], row["blob"], row["username"], _repo(row), bool(row["can_write"]))


def authorized_keys_line(grant: KeyGrant, command: str) -> str:
    """The ``authorized_keys`` line sshd gets for a key: ``restrict,command="<command>" <kind> <blob>``.

    ``restrict`` turns off forwarding, pty and every other option sshd would
    otherwise allow; the forced command is all the key can run. ValueError
    for a command with a double quote, backslash or control character (it
    would end the option or the line), and for a stored key that is not one
    hostd would write (a row changed by hand).
    """
    # Security: the line is parsed by sshd; nothing may end the quoted option or start another line.
    if not command or any(c in '"\\' or unicodedata.category(c) == "Cc" for c in command):
        raise ValueError(f"the forced command {command!r} is empty or has a quote, backslash or control character")
    if grant.kind not in KINDS or not _BASE64.match(grant.blob):
        raise ValueError(f"key {grant.key_id} is not a key hostd stores")
    return f'restrict,command="{command}" {grant.kind} {grant.blob}'


def _title(text: str) -> str:
    if len(text) > MAX_TITLE or _unprintable(text):
        raise AccountError(f"a key's title is at most {MAX_TITLE} characters, with no control characters")
    return text.strip()


def _existing_user(conn: Connection, text: str) -> str:
    """The canonical name of an existing user, whose row stays until the transaction ends."""
    name = normalize_name(text)
    if name is None:
        raise AccountError(f"invalid user name: {text!r}")
    if conn.execute("SELECT 1 FROM users WHERE name = %s FOR KEY SHARE", (name,)).fetchone() is None:
        raise AccountError(f"no such user: {name}")
    return name


def _insert(conn: Connection, key: PublicKey, title: str, *, username: str | None = None,
            repo: RepoName | None = None, write: bool = False) -> KeyRecord:
    owner, name = (None, None) if repo is None else (repo.owner, repo.name)
    # Security: the unique fingerprint is the arbiter, so two admins adding one key at once cannot both succeed.
    row = conn.execute(
        "INSERT INTO ssh_keys (username, repo_owner, repo_name, can_write, title, kind, blob, fingerprint, bits)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (fingerprint) DO NOTHING RETURNING {_COLUMNS}",
        (username, owner, name, write, title, key.kind, key.blob, key.fingerprint, key.bits),
    ).fetchone()
    if row is None:
        raise KeyRejected("this key is already in use")
    return _record(row)


def _repo(row: dict[str, Any]) -> RepoName | None:
    return None if row["repo_owner"] is None else RepoName(row["repo_owner"], row["repo_name"])


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(row["id"], row["kind"], row["bits"], row["fingerprint"], row["title"], row["username"],
                     _repo(row), bool(row["can_write"]), row["created"])
