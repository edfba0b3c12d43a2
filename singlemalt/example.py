"""singlemalt in front of a plain WSGI app: a tiny notes service.

Notes live at ``/notes/<owner>/<name>``.  Anyone may read a public note,
only its owner may read a private one or change any of theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from singlemalt import (
    Action,
    Allowed,
    Decision,
    Denied,
    Identity,
    Malformed,
    PasswordHasher,
    SingleMalt,
    Target,
    TokenRecord,
    UserRecord,
    Verifier,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

NOTES = {"alice/todo": "buy milk", "alice/diary": "dear diary"}
PUBLIC = {"alice/todo"}


def notes_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The protected app knows nothing about authentication; it reads REMOTE_USER."""
    name = environ["singlemalt.target"].repository
    if environ["REQUEST_METHOD"] == "PUT":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        NOTES[name] = environ["wsgi.input"].read(length).decode("utf-8")
    body = f"{NOTES.get(name, '')}\n(seen by {environ.get('REMOTE_USER', 'anonymous')})\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode("utf-8")]


def classify_notes(environ: WSGIEnvironment) -> Target | Malformed:
    """GET and HEAD read a note; every other method is a write (fail closed)."""
    path = environ.get("PATH_INFO", "")
    name = path.removeprefix("/notes/")
    if name == path or name.count("/") != 1 or ".." in name:
        return Malformed("expected /notes/<owner>/<name>")
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return Target(name, Action.READ, "read-note")
    return Target(name, Action.WRITE, "write-note")


def authorize_notes(identity: Identity | None, target: Target) -> Decision:
    """Owners do anything with their notes; others may read public ones."""
    owner = target.repository.split("/", 1)[0]
    if identity is not None and identity.username == owner:
        return Allowed("owner")
    if target.repository in PUBLIC:
        if target.action is Action.READ:
            return Allowed("public note")
        return Denied("only the owner may change this note", reveal=True)
    return Denied("private note")


class MemoryStore:
    """A CredentialStore in a dict; real ones query a database."""

    def __init__(self, users: dict[str, UserRecord]) -> None:
        self.users = users

    def user(self, username: str) -> UserRecord | None:
        return self.users.get(username)

    def token(self, token_id: str) -> TokenRecord | None:
        return None


def make_app(hasher: PasswordHasher | None = None) -> SingleMalt:
    """Wire it together: alice's password is "wonderland"."""
    hasher = hasher or PasswordHasher()
    store = MemoryStore({"alice": UserRecord("alice", hasher.hash("wonderland"), 1)})
    return SingleMalt(
        notes_app,
        classify=classify_notes,
        verifier=Verifier(store, hasher=hasher),
        authorize=authorize_notes,
        realm="notes",
    )
