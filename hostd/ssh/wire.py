"""The messages ``hostd-ssh`` (``hostd/ssh/hostd-ssh.c``) sends the gateway.

One message per connection: a 4-byte big-endian length, then a kind and
NUL-terminated fields, with the session's three descriptors attached
(``SCM_RIGHTS``) to a session::

    S  KEY-FINGERPRINT  SSH_ORIGINAL_COMMAND  GIT_PROTOCOL  SSH_CONNECTION   (+ stdin, stdout, stderr)
    K  FINGERPRINT      CONNECTION ("addr port" of the client, or "")

The gateway answers a session with one byte, its exit status, and a key
request with the ``authorized_keys`` line (or nothing).
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

#: The C side refuses to build a longer message.
MAX_MESSAGE: Final = 16384
SESSION: Final = "S"
KEY: Final = "K"
_FIELDS: Final = {SESSION: 4, KEY: 2}


class BadMessage(ValueError):
    """Not a message ``hostd-ssh`` sends."""


class Empty(BadMessage):
    """A connection closed before it sent anything (a health check)."""


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded message; ``fds`` are the attached descriptors (the receiver closes them)."""

    kind: str
    fields: tuple[str, ...]
    fds: tuple[int, ...] = field(default=(), repr=False)


def receive(sock: socket.socket) -> Message:
    """Read one message (and its descriptors) from ``sock``; :class:`BadMessage` if it is not one."""
    data, fds, flags, _ = socket.recv_fds(sock, 4 + MAX_MESSAGE, 3)
    if not data and not fds:
        raise Empty("nothing sent")
    try:
        if flags & socket.MSG_CTRUNC:
            raise BadMessage("descriptors cut off")
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            if len(data) >= 4 and struct.unpack(">I", data[:4])[0] > MAX_MESSAGE:
                raise BadMessage("message too long")
            more = sock.recv(4 + MAX_MESSAGE - len(data))
            if not more:
                raise BadMessage("connection closed mid-message")
            data += more
        length = struct.unpack(">I", data[:4])[0]
        parts = data[4:4 + length].split(b"\0")
        if len(data) != 4 + length or not parts or parts[-1] != b"":
            raise BadMessage("malformed message")
        kind, *values = (part.decode("utf-8", errors="replace") for part in parts[:-1])
        if _FIELDS.get(kind) != len(values) or (kind == SESSION) != (len(fds) == 3):
            raise BadMessage(f"unexpected message {kind!r} with {len(values)} fields and {len(fds)} descriptors")
        return Message(kind, tuple(values), tuple(fds))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def client_address(connection: str) -> str:
    """The client's address from ``SSH_CONNECTION`` (``addr port addr port``) or ``addr port``; "" if absent."""
    return connection.split(" ", 1)[0] if connection else ""
