"""Audit forwarding: DICOM audit messages, RFC 5424 frames, and real UDP/TCP collectors that
must receive every row exactly once, in order, across outages and dropped connections."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from orthanc_nas import config
from orthanc_nas.audit import FAILURE, Audit, AuditQuery, encode
from orthanc_nas.audit.forwarder import MSGID, Forwarder, backoff
from orthanc_nas.audit.message import MAX_DETAILS, audit_message
from orthanc_nas.audit.syslog import (
    Sender,
    SyslogUnavailable,
    TcpSender,
    UdpSender,
    frame,
    octet_counted,
    severity_for,
)
from orthanc_nas.audit.trail import EVENT_CODES, SECURITY_ALERT, USER_AUTHENTICATION
from orthanc_nas.clock import ManualClock
from orthanc_nas.config import SECTION, ConfigError
from orthanc_nas.db import Database
from syslog_collector import (
    SYSLOG_MSG,
    WAIT,
    TcpCollector,
    UdpCollector,
    objects,
    parse,
    row_id,
    trail_details,
    xml,
)

from .conftest import MakeDb

KEY = b"k" * 32
END = b"END"  # sent after the forwarded rows, on the same socket: nothing may follow it

class ListLog:
    def __init__(self) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def error(self, message: str) -> None:
        self.errors.append(message)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(make_db: MakeDb) -> Database:
    return make_db()


@pytest.fixture
def audit(db: Database, clock: ManualClock) -> Audit:
    return Audit(db, clock, KEY)


@pytest.fixture
def log() -> ListLog:
    return ListLog()


def record_logins(audit: Audit, clock: ManualClock, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        clock.advance(60)
        audit.record("login", actor=f"user{i}", ip="10.0.0.1", n=i)


def row(audit: Audit, event: str, **kwargs: Any) -> dict[str, Any]:
    audit.record(event, **{"actor": "alice", "ip": "10.0.0.7", **kwargs})
    _, items = audit.search(AuditQuery(limit=1))
    return items[0]


# ---- the XML -------------------------------------------------------------------------------


def test_a_failed_login(audit: Audit, clock: ManualClock) -> None:
    item = row(audit, "login", outcome=FAILURE, reason="wrong PIN")
    root = xml(audit_message(item, source_id="pacs-1"))
    assert [c.tag for c in root] == ["EventIdentification", "ActiveParticipant",
                                     "AuditSourceIdentification",
                                     "ParticipantObjectIdentification"]
    ident = root.find("EventIdentification")
    assert ident is not None
    assert ident.attrib == {"EventActionCode": "E", "EventDateTime": "2023-11-14T22:13:20.000000Z",
                            "EventOutcomeIndicator": "4"}
    assert [c.tag for c in ident] == ["EventID", "EventTypeCode"]
    assert ident[0].attrib == {"csd-code": "110114", "codeSystemName": "DCM",
                               "originalText": "User Authentication"}
    assert ident[1].attrib == {"csd-code": "110122", "codeSystemName": "DCM",
                               "originalText": "Login"}
    participant = root.find("ActiveParticipant")
    assert participant is not None and participant.attrib == {
        "UserID": "alice", "UserIsRequestor": "true", "NetworkAccessPointID": "10.0.0.7",
        "NetworkAccessPointTypeCode": "2"}
    source = root.find("AuditSourceIdentification")
    assert source is not None and source.get("AuditSourceID") == "pacs-1"
    assert set(objects(root)) == {"2/13"}  # no patient, no study: only the trail row
    assert objects(root)["2/13"].get("ParticipantObjectID") == str(item["id"])
    details = trail_details(root)
    assert details["event"] == "login" and "wrong PIN" in details["details"]


def test_an_import_names_the_patient_and_the_study(audit: Audit) -> None:
    item = row(audit, "instance_uploaded", actor="bob", ip="", target="2b3c-study",
               patient_id="PAT-1", study_uid="1.2.840.99.1")
    root = xml(audit_message(item, source_id="pacs-1"))
    ident = root.find("EventIdentification")
    assert ident is not None and ident.get("EventActionCode") == "C"
    assert ident.get("EventOutcomeIndicator") == "0"
    assert [(c.tag, c.get("csd-code")) for c in ident] == [("EventID", "110107")]
    participant = root.find("ActiveParticipant")
    assert participant is not None and participant.attrib == {"UserID": "bob",
                                                              "UserIsRequestor": "true"}
    found = objects(root)
    study, patient = found["2/3"], found["1/1"]
    assert study.get("ParticipantObjectID") == "1.2.840.99.1"
    id_type = study.find("ParticipantObjectIDTypeCode")
    assert id_type is not None and id_type.attrib == {
        "csd-code": "110180", "codeSystemName": "DCM", "originalText": "Study Instance UID"}
    assert patient.get("ParticipantObjectID") == "PAT-1"
    id_type = patient.find("ParticipantObjectIDTypeCode")
    assert id_type is not None and id_type.attrib == {
        "csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"}
    assert trail_details(root)["target"] == "2b3c-study"
    for obj in found.values():  # the schema: the ID type code comes first
        assert obj[0].tag == "ParticipantObjectIDTypeCode"


def test_instances_accessed_is_a_read(audit: Audit) -> None:
    item = row(audit, "instances_accessed", patient_id="PAT-1", study_uid="1.2.3")
    root = xml(audit_message(item, source_id="pacs-1"))
    ident = root.find("EventIdentification")
    assert ident is not None and ident.get("EventActionCode") == "R"
    event_id = ident.find("EventID")
    assert event_id is not None and event_id.get("csd-code") == "110103"
    assert event_id.get("originalText") == "DICOM Instances Accessed"
    assert set(objects(root)) == {"2/3", "1/1", "2/13"}


@pytest.mark.parametrize(("event", "action"), [
    ("study_deleted", "D"), ("share_downloaded", "R"), ("nas_mirrored", "E"),
    ("user_created", "E"), ("tag_added", "E")])
def test_action_codes(audit: Audit, event: str, action: str) -> None:
    root = xml(audit_message(row(audit, event), source_id="s"))
    ident = root.find("EventIdentification")
    assert ident is not None and ident.get("EventActionCode") == action


@pytest.mark.parametrize("event", sorted(e for e, code in EVENT_CODES.items()
                                         if code in (USER_AUTHENTICATION, SECURITY_ALERT)))
def test_every_authentication_and_security_event_has_an_event_type(audit: Audit,
                                                                    event: str) -> None:
    root = xml(audit_message(row(audit, event), source_id="s"))
    codes = [c.get("csd-code") for c in root.iter("EventTypeCode")]
    assert codes and all(c in {"110122", "110123", "110129", "110131", "110132", "110133",
                               "110135", "110136", "110137"} for c in codes), (event, codes)


def test_logout_and_a_role_change(audit: Audit) -> None:
    logout = xml(audit_message(row(audit, "session_ended_by_new_login"), source_id="s"))
    assert [c.get("csd-code") for c in logout.iter("EventTypeCode")] == ["110123"]
    updated = xml(audit_message(row(audit, "user_updated", target="bob", role="admin"),
                                source_id="s"))
    assert [c.get("csd-code") for c in updated.iter("EventTypeCode")] == ["110137", "110136"]


def test_hostile_values_do_not_break_the_xml_nor_the_frame(audit: Audit) -> None:
    actor = 'eve<&">\'\r\n\x00\x1b]]>'
    item = row(audit, "login", actor=actor, ip="1.2.3.4\n", target="<x>&amp;")
    message = audit_message(item, source_id='src "1" <&>')
    root = xml(message)
    participant = root.find("ActiveParticipant")
    assert participant is not None and participant.get("UserID") == encode(actor)
    source = root.find("AuditSourceIdentification")
    assert source is not None and source.get("AuditSourceID") == 'src "1" <&>'
    framed = frame(message, ts=item["ts"], hostname="h", app_name="a", msgid=MSGID,
                   severity=5, facility=10)
    assert b"\n" not in framed and b"\r" not in framed and b"\x00" not in framed
    _, parsed = parse(framed)
    participant = parsed.find("ActiveParticipant")
    assert participant is not None and participant.get("UserID") == encode(actor)


def test_raw_control_characters_in_a_row_are_made_xml_legal() -> None:
    item = {"id": 7, "ts": 0.0, "actor": "a\x00b\x1b\ud800", "ip": "", "event": "login",
            "event_code": "110114", "outcome": "success", "outcome_code": 0, "target": "",
            "patient_id": "", "study_uid": "", "details": "{}"}
    participant = xml(audit_message(item, source_id="s")).find("ActiveParticipant")
    assert participant is not None and participant.get("UserID") == "a\\x00b\\x1b\ufffd"


def test_rows_from_before_the_dicom_codes_existed() -> None:
    legacy = {"id": 1, "ts": 1.5, "actor": "old", "ip": "", "event": "lockout",
              "event_code": "", "outcome": "failure", "outcome_code": 0, "target": "",
              "patient_id": "", "study_uid": "", "details": None}
    ident = xml(audit_message(legacy, source_id="s")).find("EventIdentification")
    assert ident is not None and ident.get("EventOutcomeIndicator") == "8"
    assert ident.get("EventDateTime") == "1970-01-01T00:00:01.500000Z"
    event_id = ident.find("EventID")
    assert event_id is not None and event_id.get("csd-code") == "110114"


def test_huge_details_are_capped(audit: Audit) -> None:
    item = row(audit, "nas_config_changed", blob="x" * 100_000)
    message = audit_message(item, source_id="s")
    assert len(message) < 32768
    assert len(trail_details(xml(message))["details"].encode()) <= MAX_DETAILS + 20


def test_the_worst_values_still_fit_a_syslog_message(audit: Audit) -> None:
    """Every text field at its cap, in characters XML escapes longest or UTF-8 encodes widest."""
    for filler in ('"' * 5000, "\U0001f600" * 5000, "&<" * 2500):
        item = {**row(audit, "study_downloaded", blob=filler * 4), "actor": filler,
                "ip": filler, "target": filler, "patient_id": filler, "study_uid": filler}
        assert len(audit_message(item, source_id=filler)) < 32768


# ---- RFC 5424 --------------------------------------------------------------------------------


def test_frame_header() -> None:
    framed = frame(b"<AuditMessage/>", ts=1_700_000_000.25, hostname="pacs.example",
                   app_name="orthanc-nas", msgid=MSGID, severity=5, facility=10)
    assert framed.startswith(b"<85>1 2023-11-14T22:13:20.250000Z pacs.example orthanc-nas - "
                             b"DICOM+RFC3881 - \xef\xbb\xbf<AuditMessage/>")
    match, _ = parse(framed)
    assert int(match["pri"]) == 85 and match["msgid"] == b"DICOM+RFC3881"
    assert match["procid"] == b"-" and match["sd"] == b"-"


def test_frame_nil_values_unprintable_characters_and_truncation() -> None:
    framed = frame(b"x", ts=0, hostname="", app_name="", msgid="", severity=0, facility=0)
    assert framed.startswith(b"<0>1 1970-01-01T00:00:00.000000Z - - - - - ")
    framed = frame(b"x", ts=0, hostname="my h\u00f6st", app_name="orthanc nas", msgid="a\tb",
                   severity=7, facility=23)
    match = SYSLOG_MSG.fullmatch(framed)
    assert match is not None and int(match["pri"]) == 191
    assert (match["hostname"], match["app"], match["msgid"]) == (b"my_h_st", b"orthanc_nas",
                                                                b"a_b")
    framed = frame(b"x", ts=0, hostname="h" * 300, app_name="a" * 60, msgid="m" * 40,
                   severity=5, facility=10)
    match = SYSLOG_MSG.fullmatch(framed)
    assert match is not None
    assert len(match["hostname"]) == 255 and len(match["app"]) == 48
    assert len(match["msgid"]) == 32


@pytest.mark.parametrize(("severity", "facility"), [(8, 10), (-1, 10), (5, 24), (5, -1)])
def test_frame_refuses_impossible_priorities(severity: int, facility: int) -> None:
    with pytest.raises(ValueError, match="syslog"):
        frame(b"x", ts=0, hostname="h", app_name="a", msgid="m", severity=severity,
              facility=facility)


def test_severity_follows_the_outcome() -> None:
    assert [severity_for(c) for c in (0, 4, 8, 12)] == [5, 4, 3, 2]


def test_octet_counting_counts_octets() -> None:
    assert octet_counted(b"abc") == b"3 abc"
    assert octet_counted("\u00e9".encode()) == b"2 \xc3\xa9"
    assert octet_counted(b"") == b"0 "


# ---- real collectors ----------------------------------------------------------------------


@pytest.fixture
def tcp_collector() -> Iterator[Callable[..., TcpCollector]]:
    made: list[TcpCollector] = []

    def make(close_first_after: int | None = None) -> TcpCollector:
        made.append(TcpCollector(close_first_after))
        return made[-1]

    yield make
    for collector in made:
        collector.stop()


@pytest.fixture
def udp_collector() -> Iterator[UdpCollector]:
    collector = UdpCollector()
    yield collector
    collector.stop()


class Factory:
    """A sender factory that remembers what it made (to send the END marker through it)."""

    def __init__(self, make: Callable[[], Sender]) -> None:
        self.make = make
        self.made: list[Sender] = []

    def __call__(self) -> Sender:
        self.made.append(self.make())
        return self.made[-1]

    def end(self) -> None:
        self.made[-1].send([END])


def forwarder(db: Database, clock: ManualClock, log: ListLog,
              factory: Callable[[], Sender], batch: int = 200) -> Forwarder:
    return Forwarder(db, factory, clock, log, source_id="pacs-1", hostname="pacs.example",
                     batch=batch)


def received(messages: queue.Queue[bytes]) -> list[tuple[int, str]]:
    """(row id, event) of every message up to END; each parsed as RFC 5424 + DICOM XML."""
    out: list[tuple[int, str]] = []
    while True:
        message = messages.get(timeout=WAIT)
        if message == END:
            return out
        match, root = parse(message)
        assert match["msgid"] == b"DICOM+RFC3881" and match["hostname"] == b"pacs.example"
        assert match["app"] == b"orthanc-nas"
        source = root.find("AuditSourceIdentification")
        assert source is not None and source.get("AuditSourceID") == "pacs-1"
        out.append((row_id(root), trail_details(root)["event"]))


def test_udp_delivers_every_row_in_order(db: Database, audit: Audit, clock: ManualClock,
                                         log: ListLog, udp_collector: UdpCollector) -> None:
    record_logins(audit, clock, 3)
    audit.record("instance_uploaded", actor="bob", ip="", patient_id="P", study_uid="1.2")
    audit.record("login", actor="mallory", ip="6.6.6.6", outcome=FAILURE)
    factory = Factory(lambda: UdpSender("127.0.0.1", udp_collector.port))
    fwd = forwarder(db, clock, log, factory)
    assert fwd.forward_once() == 5
    assert fwd.forward_once() == 0
    factory.end()
    assert received(udp_collector.messages) == [(1, "login"), (2, "login"), (3, "login"),
                                                (4, "instance_uploaded"), (5, "login")]
    status = fwd.status()
    assert status["last_id"] == 5 and status["pending"] == 0 and status["last_error"] is None
    assert status["last_success_at"] == clock.now() and status["enabled"] is True


def test_tcp_delivers_every_row_in_order_in_batches(db: Database, audit: Audit,
                                                    clock: ManualClock, log: ListLog,
                                                    tcp_collector: Callable[..., TcpCollector]
                                                    ) -> None:
    collector = tcp_collector().start()
    record_logins(audit, clock, 7)
    factory = Factory(lambda: TcpSender("127.0.0.1", collector.port, timeout=WAIT))
    fwd = forwarder(db, clock, log, factory, batch=3)
    assert [fwd.forward_once() for _ in range(4)] == [3, 3, 1, 0]
    factory.end()
    assert received(collector.messages) == [(i, "login") for i in range(1, 8)]
    assert collector.connections == 1 and len(factory.made) == 1


def test_a_collector_outage_loses_nothing(db: Database, audit: Audit, clock: ManualClock,
                                          log: ListLog,
                                          tcp_collector: Callable[..., TcpCollector]) -> None:
    collector = tcp_collector()  # bound, not listening: connections are refused
    record_logins(audit, clock, 3)
    factory = Factory(lambda: TcpSender("127.0.0.1", collector.port, timeout=WAIT))
    fwd = forwarder(db, clock, log, factory)
    assert fwd.forward_once() == 0
    status = fwd.status()
    assert status["last_id"] is None and status["pending"] == 3
    assert status["last_error"] and "tcp" in status["last_error"]
    assert status["last_success_at"] is None and len(log.warnings) == 1
    record_logins(audit, clock, 2, first=3)  # written during the outage
    assert fwd.forward_once() == 0
    assert fwd.status()["pending"] == 5 and len(log.warnings) == 1  # said once
    collector.start()
    assert fwd.forward_once() == 5
    factory.end()
    assert received(collector.messages) == [(i, "login") for i in range(1, 6)]
    assert fwd.status()["last_id"] == 5 and fwd.status()["pending"] == 0
    assert log.infos == ["OrthancNAS: audit forwarding to syslog resumed"]


def test_a_dropped_connection_is_reopened(db: Database, audit: Audit, clock: ManualClock,
                                          log: ListLog,
                                          tcp_collector: Callable[..., TcpCollector]) -> None:
    collector = tcp_collector(close_first_after=3).start()
    record_logins(audit, clock, 7)
    factory = Factory(lambda: TcpSender("127.0.0.1", collector.port, timeout=WAIT))
    fwd = forwarder(db, clock, log, factory, batch=3)
    assert fwd.forward_once() == 3
    assert collector.closed.wait(WAIT)  # the collector hung up after the first batch
    assert fwd.forward_once() == 3
    assert fwd.forward_once() == 1
    factory.end()
    assert received(collector.messages) == [(i, "login") for i in range(1, 8)]
    assert collector.connections == 2


def test_the_loop_drains_on_wake_and_stops(db: Database, audit: Audit, clock: ManualClock,
                                           log: ListLog,
                                           tcp_collector: Callable[..., TcpCollector]) -> None:
    collector = tcp_collector().start()
    factory = Factory(lambda: TcpSender("127.0.0.1", collector.port, timeout=WAIT))
    fwd = forwarder(db, clock, log, factory, batch=4)
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=fwd.run, args=(stop, wake), kwargs={"interval": 60.0})
    thread.start()
    try:
        record_logins(audit, clock, 10)
        wake.set()
        got = [messages for messages in (collector.messages.get(timeout=WAIT)
                                         for _ in range(10))]
    finally:
        stop.set()
        wake.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert [row_id(parse(m)[1]) for m in got] == list(range(1, 11))
    assert fwd.status()["pending"] == 0


# ---- the loop's failures, the cursor's corner cases ------------------------------------------


class FakeSender:
    def __init__(self, failures: list[BaseException | None]) -> None:
        self.failures = failures
        self.sent: list[bytes] = []
        self.closed = 0

    def send(self, messages: Sequence[bytes]) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.extend(messages)

    def close(self) -> None:
        self.closed += 1


class CountingStop(threading.Event):
    """A stop event that records every wait and sets itself after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.limit:
            self.set()
        return self.is_set()


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [backoff(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff(10_000) == 60


def test_the_loop_backs_off_and_survives_bugs(db: Database, audit: Audit,
                                              clock: ManualClock, log: ListLog) -> None:
    record_logins(audit, clock, 2)
    refused: list[BaseException | None] = [SyslogUnavailable("refused")]
    failures = refused * 3 + [RuntimeError("password=hunter2")] + refused * 4
    sender = FakeSender(failures)
    made: list[FakeSender] = []

    def factory() -> Sender:
        made.append(sender)
        return sender

    fwd = forwarder(db, clock, log, factory)
    stop = CountingStop(limit=8)
    fwd.run(stop, threading.Event())
    assert stop.waits == [1, 2, 4, 8, 16, 32, 60, 60]  # no busy loop, capped
    assert fwd.status()["last_id"] is None and fwd.status()["pending"] == 2
    assert log.errors == ["OrthancNAS: audit forwarding failed: RuntimeError"]
    assert not any("hunter2" in m for m in log.errors + log.warnings)
    assert sender.sent == [] and sender.closed >= 7  # dropped after each failure
    # once the collector is back, the next pass sends both rows and resets the backoff
    assert fwd.forward_once() == 2 and fwd.status()["last_id"] == 2


def test_rows_pruned_before_forwarding_are_skipped_with_one_warning(
        db: Database, audit: Audit, clock: ManualClock, log: ListLog) -> None:
    sender = FakeSender([])
    fwd = forwarder(db, clock, log, lambda: sender)
    record_logins(audit, clock, 3)
    assert fwd.forward_once() == 3
    record_logins(audit, clock, 7, first=3)  # rows 4 to 10
    first_kept = audit.search(AuditQuery(limit=3))[1][-1]  # row 8
    sender.failures = [SyslogUnavailable("down")]
    assert audit.prune(first_kept["ts"], "system") == 7  # rows 1 to 7, 4 to 7 unsent
    assert fwd.forward_once() == 0  # collector down: warned once about the gap...
    assert fwd.forward_once() == 4  # ...not again: rows 8, 9, 10 and the audit_pruned row
    gap = [w for w in log.warnings if "pruned" in w]
    assert gap == ["OrthancNAS: audit rows 4 to 7 were pruned before they could be forwarded "
                   "to syslog; continuing at 8"]
    ids = [row_id(parse(m)[1]) for m in sender.sent]
    assert ids == [1, 2, 3, 8, 9, 10, 11]


def test_a_cut_tail_moves_the_cursor_back(db: Database, audit: Audit, clock: ManualClock,
                                          log: ListLog, tmp_path: Path) -> None:
    sender = FakeSender([])
    fwd = forwarder(db, clock, log, lambda: sender)
    record_logins(audit, clock, 5)
    assert fwd.forward_once() == 5
    if db.dialect == "sqlite":
        conn = sqlite3.connect(tmp_path / "db.sqlite")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        conn.execute("DELETE FROM audit WHERE id >= 4")
        conn.commit()
        conn.close()
    else:  # the database's owner can do the same
        with db.transaction() as tx:
            tx.execute("ALTER TABLE audit DISABLE TRIGGER audit_no_delete")
            tx.execute("DELETE FROM audit WHERE id >= 4")
    assert fwd.forward_once() == 0
    assert fwd.status()["last_id"] == 3
    assert any("ends at row 3" in w for w in log.warnings)
    record_logins(audit, clock, 1)
    assert fwd.forward_once() == 1
    assert [row_id(parse(m)[1]) for m in sender.sent] == [1, 2, 3, 4, 5, 4]


def test_source_id_defaults_to_the_host_name(db: Database, audit: Audit,
                                             clock: ManualClock, log: ListLog) -> None:
    sender = FakeSender([])
    fwd = Forwarder(db, lambda: sender, clock, log, source_id="", hostname="pacs.example",
                    facility=13)
    audit.record("lockout", actor="bob", ip="", outcome=FAILURE)
    assert fwd.forward_once() == 1
    match, root = parse(sender.sent[0])
    assert int(match["pri"]) == 13 * 8 + 3  # serious failure: error
    source = root.find("AuditSourceIdentification")
    assert source is not None and source.get("AuditSourceID") == "pacs.example"


# ---- configuration -----------------------------------------------------------------------------


def load_syslog(syslog: dict[str, Any]) -> dict[str, Any]:
    cfg = config.load({SECTION: {"data_dir": "/srv/x", "audit": {"syslog": syslog}}})
    section: dict[str, Any] = cfg.get("audit.syslog")
    return section


def test_syslog_configuration_defaults_and_checks() -> None:
    assert load_syslog({}) == {"enabled": False, "host": "", "port": 514, "protocol": "tcp",
                               "facility": 10, "app_name": "orthanc-nas", "source_id": ""}
    assert load_syslog({"enabled": True, "host": "siem.example"})["host"] == "siem.example"
    for bad, key in (({"enabled": True}, "host"), ({"enabled": True, "host": " "}, "host"),
                     ({"protocol": "tls"}, "protocol"), ({"port": 0}, "port"),
                     ({"facility": 24}, "facility"), ({"verbose": True}, "verbose")):
        with pytest.raises(ConfigError) as info:
            load_syslog(bad)
        assert info.value.key == f"OrthancNAS.audit.syslog.{key}"
