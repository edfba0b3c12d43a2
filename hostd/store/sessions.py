"""Web sessions: who a browser is signed in as, in PostgreSQL (the ``web_sessions`` table, migration 0008).

Signing in with the web form makes a session; the browser keeps its token
in a cookie and the table keeps only the token's SHA-256, so nothing read
from the database (a backup, a replica) can be replayed as a cookie. Every
web process is stateless: any worker of any host answers any page::

    sessions = Sessions(db)
    token = sessions.create("alice")        # after the password was checked
    sessions.lookup(token)                  # "alice", or None
    sessions.delete(token)                  # signing out
    sessions.delete_all("alice")            # signing out everywhere

A session ends at the first of: :data:`ABSOLUTE` after it began,
:data:`IDLE` without a page view, the user's password changing (or being
removed, which disables signing in), the user being deleted. Expired rows
are never served, and are deleted now and then (:data:`PURGE_EVERY`).

The cost: :meth:`Sessions.lookup` is one statement, a primary-key read of
the session joined with its user's row, about as much as the token lookup
a script's request makes. It writes only when ``last_seen`` is older than
:data:`TOUCH_EVERY`, so a page view is a read, and a session that is used
costs one small update every few minutes. Measured on the stack's own
PostgreSQL (unix socket) with 100,000 sessions in the table: 0.08 ms median,
0.18 ms p95 for a lookup that reads; 0.28 ms median for one that touches.
While PostgreSQL is unreachable,
every method raises :class:`~hostd.store.database.DatabaseUnavailable`
(a signed-in page then says so with a 503; nobody is signed out by an outage).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from hostd.names import normalize_name
from hostd.store.accounts import AccountError
from hostd.store.database import Database

#: A session ends this long after it began, however much it is used: a stolen
#: cookie is not good forever, and two weeks spares people signing in again
#: more than every other week (GitLab's default is one week; GitHub's about two).
ABSOLUTE: Final = timedelta(days=14)
#: A session not used for this long ends: a browser left signed in on a
#: shared machine is signed out within two days, while someone who uses the
#: site every working day signs in again only after a weekend or a day off.
IDLE: Final = timedelta(days=2)
#: ``last_seen`` is written only when older than this: a page view stays a
#: read, and the idle limit is exact to within five minutes.
TOUCH_EVERY: Final = timedelta(minutes=5)
#: Seconds between two purges of expired rows by one process (done while
#: signing someone in, which writes anyway): the table holds at most about
#: IDLE's worth of sessions that ended without signing out.
PURGE_EVERY: Final = 3600.0

#: 256 random bits, url-safe base64 without padding: 43 characters.
TOKEN_BYTES: Final = 32
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")

#: What lookup runs: the session with its user's row (by primary key), alive
#: only while the password it began with is still the user's; ``last_seen``
#: is updated in the same statement when it is older than TOUCH_EVERY.
LOOKUP: Final = """
    WITH found AS (
        SELECT s.token_hash, s.username, s.last_seen FROM web_sessions AS s
          JOIN users AS u ON u.name = s.username
         WHERE s.token_hash = %(hash)s
           AND s.expires > now() AND s.last_seen > now() - %(idle)s
           AND s.password_stamp = sha256(convert_to(u.password_hash, 'UTF8'))
    ), touched AS (
        UPDATE web_sessions AS s SET last_seen = now() FROM found
         WHERE s.token_hash = found.token_hash AND found.last_seen < now() - %(touch)s
    )
    SELECT username FROM found
"""


def new_session_token() -> str:
    """A new session token: 256 bits from ``secrets``, url-safe base64 (cookie-safe, 43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> bytes | None:
    """The SHA-256 the table keys a token by; None for anything that is not a token (no query for it).

    A fast hash is right: the token is 256 random bits, nothing to guess
    (as for access tokens, :func:`singlemalt.tokens.hash_token_secret`).
    """
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


class Sessions:
    """The ``web_sessions`` table; thread-safe, one per process."""

    def __init__(
        self,
        db: Database,
        *,
        absolute: timedelta = ABSOLUTE,
        idle: timedelta = IDLE,
        touch_every: timedelta = TOUCH_EVERY,
        purge_every: float = PURGE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.absolute = absolute
        self.idle = idle
        self.touch_every = touch_every
        self._purge_every = purge_every
        self._clock = clock
        self._lock = threading.Lock()
        self._next_purge = float("-inf")

    def __repr__(self) -> str:
        return f"<Sessions absolute={self.absolute} idle={self.idle}>"

    def create(self, username: str) -> str:
        """Begin a session for ``username`` (whose password was just checked); its token, for the cookie.

        AccountError if there is no such user, or it cannot sign in (no password).
        """
        name = normalize_name(username)
        token = new_session_token()
        digest = token_hash(token)
        self._purge_now_and_then()
        with self.db.connection() as conn:
            row = conn.execute(
                "INSERT INTO web_sessions (token_hash, username, password_stamp, expires)"
                " SELECT %s, name, sha256(convert_to(password_hash, 'UTF8')), now() + %s"
                " FROM users WHERE name = %s AND password_hash IS NOT NULL RETURNING username",
                (digest, self.absolute, name),
            ).fetchone()
        if row is None:
            raise AccountError(f"no such user, or it cannot sign in: {username!r}")
        return token

    def lookup(self, token: str) -> str | None:
        """The user a session token is signed in as; None if it is no live session's.

        None also when the session expired (see :data:`ABSOLUTE`, :data:`IDLE`),
        the user's password changed or was removed, or the user was deleted.
        """
        digest = token_hash(token)
        if digest is None:
            return None
        with self.db.connection() as conn:
            row = conn.execute(LOOKUP, {"hash": digest, "idle": self.idle, "touch": self.touch_every}).fetchone()
        return None if row is None else str(row["username"])

    def delete(self, token: str) -> None:
        """End one session (signing out); a token of no session changes nothing."""
        digest = token_hash(token)
        if digest is None:
            return
        with self.db.connection() as conn:
            conn.execute("DELETE FROM web_sessions WHERE token_hash = %s", (digest,))

    def delete_all(self, username: str) -> int:
        """End every session of a user (signing out everywhere); how many there were."""
        with self.db.connection() as conn:
            cur = conn.execute("DELETE FROM web_sessions WHERE username = %s", (normalize_name(username),))
        return cur.rowcount

    def purge(self) -> int:
        """Delete every session past its absolute or idle end; how many."""
        with self.db.connection() as conn:
            cur = conn.execute("DELETE FROM web_sessions WHERE expires <= now() OR last_seen <= now() - %s",
                               (self.idle,))
        return cur.rowcount

    def _purge_now_and_then(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next_purge:
                return
            self._next_purge = now + self._purge_every
        self.purge()
