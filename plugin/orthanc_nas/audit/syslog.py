"""RFC 5424 syslog messages and their transports: UDP (RFC 5426) and TCP (RFC 6587 framing).

``frame`` builds ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - BOM MSG`` (no PROCID, no
STRUCTURED-DATA). Header fields are reduced to PRINTUSASCII without spaces (anything else
becomes ``_``), cut to the RFC 5424 lengths, and ``-`` when empty.

Senders raise ``SyslogUnavailable`` on any socket error, so the caller keeps the rows queued
and tries again later. Neither transport has acknowledgements: UDP cannot tell whether a
datagram arrived; TCP only tells that the local kernel accepted the bytes. ``TcpSender``
notices a connection the collector has closed before it writes to it (and reconnects), but a
collector that dies with unread bytes in its buffers loses them; after an error in the middle of
a batch, the part already written is sent again (at least once: the row id in each message lets
the collector drop duplicates).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from typing import Protocol

from .message import rfc3339

BOM = b"\xef\xbb\xbf"
NILVALUE = "-"
HOSTNAME_MAX = 255
APP_NAME_MAX = 48
MSGID_MAX = 32
AUTHPRIV = 10  # security/authorization messages (PS3.15 A.6 and A.7)
_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


class SyslogUnavailable(OSError):
    """The collector cannot be reached or refused the messages; nothing is known delivered."""


def severity_for(outcome_code: int) -> int:
    """Syslog severity of a DICOM EventOutcomeIndicator: 0 success -> 5 notice (PS3.15 A.7:
    "most messages"), 4 minor failure -> 4 warning, 8 serious failure -> 3 error, 12 major
    failure (or anything above) -> 2 critical."""
    if outcome_code <= 0:
        return 5
    if outcome_code <= 4:
        return 4
    return 3 if outcome_code <= 8 else 2


def header_field(value: str, limit: int) -> str:
    """One RFC 5424 header field: printable US-ASCII without spaces, at most ``limit``
    characters, NILVALUE when empty."""
    cleaned = _NOT_PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or NILVALUE


def frame(message: bytes, *, ts: float, hostname: str, app_name: str, msgid: str,
          severity: int, facility: int) -> bytes:
    """An RFC 5424 SYSLOG-MSG carrying ``message`` (UTF-8, marked with a BOM)."""
    if not 0 <= facility <= 23:
        raise ValueError(f"syslog facility must be 0 to 23, not {facility}")
    if not 0 <= severity <= 7:
        raise ValueError(f"syslog severity must be 0 to 7, not {severity}")
    header = (f"<{facility * 8 + severity}>1 {rfc3339(ts)} "
              f"{header_field(hostname, HOSTNAME_MAX)} {header_field(app_name, APP_NAME_MAX)} "
              f"{NILVALUE} {header_field(msgid, MSGID_MAX)} {NILVALUE} ")
    return header.encode("ascii") + BOM + message


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


class Sender(Protocol):
    def send(self, messages: Sequence[bytes]) -> None:
        """Sends every message, in order; raises ``SyslogUnavailable``."""

    def close(self) -> None: ...


class UdpSender:
    """One datagram per message (RFC 5426). UDP cannot confirm delivery: a message counts as
    sent once the kernel took it. The socket is connected, so an ICMP "port unreachable" from
    an earlier datagram makes a later send fail (and the batch is kept)."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._sock: socket.socket | None = None

    def send(self, messages: Sequence[bytes]) -> None:
        try:
            if self._sock is None:
                self._sock = _connect(self._address, socket.SOCK_DGRAM, None)
            for message in messages:
                self._sock.send(message)
        except OSError as exc:
            self.close()
            raise SyslogUnavailable(f"syslog collector {self._address[0]}:{self._address[1]}"
                                    f" (udp): {exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class TcpSender:
    """One kept connection with RFC 6587 octet counting; reconnects after an error or when the
    collector has closed it."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._sock: socket.socket | None = None

    def send(self, messages: Sequence[bytes]) -> None:
        if not messages:
            return
        payload = b"".join(octet_counted(m) for m in messages)
        try:
            if self._sock is not None and not self._usable(self._sock):
                self.close()
            if self._sock is None:
                self._sock = _connect(self._address, socket.SOCK_STREAM, self._timeout)
            self._sock.sendall(payload)
        except OSError as exc:
            self.close()
            raise SyslogUnavailable(f"syslog collector {self._address[0]}:{self._address[1]}"
                                    f" (tcp): {exc}") from exc

    def _usable(self, sock: socket.socket) -> bool:
        """False when the collector closed or reset the connection (it never sends data, so a
        readable socket means end of stream or an error)."""
        sock.settimeout(0.0)
        try:
            while sock.recv(4096):
                pass  # unexpected chatter from the collector: discard it
            return False  # end of stream
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            sock.settimeout(self._timeout)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _connect(address: tuple[str, int], kind: socket.SocketKind,
             timeout: float | None) -> socket.socket:
    """A socket connected to the first address of ``host`` that accepts (IPv4 or IPv6)."""
    error: OSError = OSError(f"no address for {address[0]}")
    for family, _, proto, _, sockaddr in socket.getaddrinfo(*address, type=kind):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error
