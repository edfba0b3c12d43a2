"""What a push says and what receive-pack answers, read as it passes by (pure parsing, bounded).

A push's request starts with its ref commands (``<old> <new> <ref>``
pkt-lines up to a flush, the first carrying the client's capabilities),
then the pack. receive-pack answers with its report-status (``unpack ok``,
``ok <ref>`` or ``ng <ref> <reason>``, a flush), wrapped in side-band
channel 1 when the client asked for ``side-band-64k``. hostd reads the
commands before git starts (to name the refs and log them) and reads the
report as it streams by, without changing a byte of either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dulwich.protocol import pkt_line
from webob import exc

from hostd.git.body import BoundedBody, RequestTooLarge, mib
from hostd.git.process import read_head
from hostd.responses import text_error

#: The most ref-command bytes read before git starts (held in memory): about 300,000 refs.
COMMANDS_LIMIT = 32 << 20
# A side-band packet carries at most this much data (65520 minus header and channel byte).
_SIDEBAND_DATA = 65515


@dataclass(frozen=True, slots=True)
class Commands:
    """A push's ref commands: the bytes as sent, the (old, new, ref) updates, the capabilities."""

    raw: bytes
    updates: tuple[tuple[bytes, bytes, bytes], ...]
    capabilities: frozenset[bytes]

    @property
    def sideband(self) -> bool:
        return b"side-band-64k" in self.capabilities or b"side-band" in self.capabilities

    @property
    def report_status(self) -> bool:
        return b"report-status" in self.capabilities


def read_commands(body: BoundedBody) -> Commands:
    """Read the ref commands (pkt-lines up to the first flush) off the body.

    Raises :class:`BodyRefused` if the body is refused meanwhile or the
    commands are larger than :data:`COMMANDS_LIMIT`, and a 400 if they are
    not pkt-lines: nothing has been answered yet, so either is an HTTP error.
    """
    parts: list[bytes] = []
    updates: list[tuple[bytes, bytes, bytes]] = []
    capabilities: frozenset[bytes] = frozenset()
    size = 0
    while True:
        header = read_head(body, 4)
        length = int(header, 16) if len(header) == 4 and _is_hex(header) else -1
        if length < 0 or 0 < length < 4:
            raise text_error(exc.HTTPBadRequest, "The receive-pack request is not pkt-lines.")
        payload = read_head(body, length - 4) if length else b""
        if len(payload) != max(length - 4, 0):
            raise text_error(exc.HTTPBadRequest, "The receive-pack request was cut off.")
        size += 4 + len(payload)
        if size > COMMANDS_LIMIT:
            raise RequestTooLarge(f"the push's ref commands are larger than {mib(COMMANDS_LIMIT)}")
        parts.append(header + payload)
        if length == 0:
            break
        line, _, caps = payload.rstrip(b"\n").partition(b"\0")
        if not updates and caps:
            capabilities = frozenset(caps.split())
        fields = line.split(b" ")
        if len(fields) == 3:
            updates.append((fields[0], fields[1], fields[2]))
    return Commands(b"".join(parts), tuple(updates), capabilities)


def _is_hex(data: bytes) -> bool:
    return all(c in b"0123456789abcdefABCDEF" for c in data)


def refusal_report(commands: Commands, reason: str) -> bytes:
    """git receive-pack's report for a pack it did not store, side-band wrapped if asked."""
    if not commands.report_status:
        return pkt_line(None) if commands.sideband else b""
    report = pkt_line(b"unpack " + reason.encode() + b"\n")
    report += b"".join(pkt_line(b"ng " + ref + b" unpacker error\n") for _, _, ref in commands.updates)
    report += pkt_line(None)
    if not commands.sideband:
        return report
    packets = [pkt_line(b"\x01" + report[i:i + _SIDEBAND_DATA]) for i in range(0, len(report), _SIDEBAND_DATA)]
    return b"".join(packets) + pkt_line(None)


class ReportReader:
    """Reads git's report-status as it passes by: which refs it says ``ok`` to.

    Bounded: it keeps at most one side-band packet and one report line. Gives
    up (``broken``) on anything that is not the protocol, never raising.
    """

    def __init__(self, sideband: bool) -> None:
        self._sideband = sideband
        self._outer = bytearray()
        self._inner = bytearray()
        self.ok: list[bytes] = []
        self.done = False
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.done or self.broken:
            return
        if not self._sideband:
            self._inner += data
        else:
            self._outer += data
            for packet in self._packets(self._outer):
                if packet is None:
                    break
                if packet[:1] == b"\x01":
                    self._inner += packet[1:]
        for line in self._packets(self._inner):
            if line is None:
                self.done = True
                return
            if line.startswith(b"ok "):
                self.ok.append(line[3:].rstrip(b"\n"))

    def _packets(self, buffer: bytearray) -> Iterator[bytes | None]:
        """Whole pkt-lines taken off the front of ``buffer``; None for a flush."""
        while len(buffer) >= 4:
            header = bytes(buffer[:4])
            if not _is_hex(header) or 0 < int(header, 16) < 4:
                self.broken = True
                return
            size = int(header, 16)
            if size == 0:
                del buffer[:4]
                yield None
                continue
            if len(buffer) < size:
                return
            packet = bytes(buffer[4:size])
            del buffer[:size]
            yield packet


