"""A real syslog collector for the tests (TCP with RFC 6587 octet counting, or UDP) and the
parsing of what it receives: RFC 5424 frames carrying DICOM PS3.15 audit messages."""

from __future__ import annotations

import base64
import queue
import re
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from orthanc_nas.audit.syslog import BOM

WAIT = 5.0  # seconds any single expected thing may take before the test fails

# RFC 5424 section 6 ABNF: HEADER SP STRUCTURED-DATA [SP MSG].
SYSLOG_MSG = re.compile(
    rb"<(?P<pri>[0-9]{1,3})>(?P<version>[1-9][0-9]{0,2}) "
    rb"(?P<timestamp>-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    rb"(?:Z|[+-][0-9]{2}:[0-9]{2})) "
    rb"(?P<hostname>-|[\x21-\x7e]{1,255}) (?P<app>-|[\x21-\x7e]{1,48}) "
    rb"(?P<procid>-|[\x21-\x7e]{1,128}) (?P<msgid>-|[\x21-\x7e]{1,32}) "
    rb"(?P<sd>-|(?:\[[^\]]*\])+)(?: (?P<msg>.*))?\Z", re.S)



def xml(message: bytes) -> ET.Element:
    return ET.fromstring(message)  # noqa: S314 - the XML the plugin itself wrote


def objects(root: ET.Element) -> dict[str, ET.Element]:
    """Participant objects by TypeCode/TypeCodeRole."""
    return {f"{o.get('ParticipantObjectTypeCode')}/{o.get('ParticipantObjectTypeCodeRole')}": o
            for o in root.findall("ParticipantObjectIdentification")}


def trail_details(root: ET.Element) -> dict[str, str]:
    trail_row = objects(root)["2/13"]
    return {d.get("type", ""): base64.b64decode(d.get("value", "")).decode()
            for d in trail_row.findall("ParticipantObjectDetail")}


def parse(datagram: bytes) -> tuple[re.Match[bytes], ET.Element]:
    match = SYSLOG_MSG.fullmatch(datagram)
    assert match is not None, datagram[:200]
    body = match["msg"]
    assert body is not None and body.startswith(BOM)
    return match, xml(body[len(BOM):])


def row_id(root: ET.Element) -> int:
    return int(objects(root)["2/13"].get("ParticipantObjectID", ""))


def split_octet_counted(buffer: bytearray) -> Iterator[bytes]:
    """Complete messages taken off the front of ``buffer`` (RFC 6587 octet counting)."""
    while True:
        space = buffer.find(b" ")
        if space < 0:
            return
        assert buffer[:space].isdigit() and not buffer.startswith(b"0"), bytes(buffer[:20])
        length = int(buffer[:space])
        if len(buffer) < space + 1 + length:
            return
        yield bytes(buffer[space + 1:space + 1 + length])
        del buffer[:space + 1 + length]


class TcpCollector:
    """A syslog collector on 127.0.0.1: bound at once (connections are refused) and accepting
    from ``start``; optionally closes its first connection after a number of messages."""

    def __init__(self, close_first_after: int | None = None) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.connections = 0
        self.closed = threading.Event()
        self.close_first_after = close_first_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> TcpCollector:
        self.listener.listen()
        self.listener.settimeout(0.1)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WAIT)
        self.listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.1)
                self._read(conn, self.close_first_after if self.connections == 1 else None)
            if self.connections == 1 and self.close_first_after is not None:
                self.closed.set()

    def _read(self, conn: socket.socket, limit: int | None) -> None:
        buffer = bytearray()
        count = 0
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            for message in split_octet_counted(buffer):
                self.messages.put(message)
                count += 1
                if limit is not None and count >= limit:
                    return  # hang up on the forwarder


class UdpCollector:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.messages: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.put(self.sock.recv(65536))
            except TimeoutError:
                continue
