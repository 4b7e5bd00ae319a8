"""One audit trail row as a DICOM PS3.15 A.5 ``AuditMessage`` (the XML that syslog carries).

Pure: no I/O. The elements follow the order of the A.5.1 schema. Each message names

* the event: ``EventID`` (the row's PS3.15 EventID), ``EventActionCode``, ``EventDateTime``
  (UTC), ``EventOutcomeIndicator`` and, where PS3.16 defines one that fits, an
  ``EventTypeCode`` (CID 403 Security Alert types, 110122 Login / 110123 Logout);
* the actor as the requesting ``ActiveParticipant`` (with its IP address when known);
* the ``AuditSourceIdentification`` (``source_id``, an application server process);
* the study (2/3, 110180 "Study Instance UID") and the patient (1/1, RFC-3881 "2" "Patient
  Number") as ``ParticipantObjectIdentification`` when the row names them;
* the trail row itself as a participant object (2 System Object / 13 Security Resource), whose
  ``ParticipantObjectID`` is the row id (a collector can detect gaps and duplicates with it) and
  whose ``ParticipantObjectDetail`` entries carry the plugin's own event name, the target and
  the details (base64, as the schema wants).

Free-text values are capped (``MAX_TEXT`` characters, ``MAX_DETAILS`` bytes of details) so that
a message stays far below the 32768 octets every DICOM syslog collector must accept; the chain
keeps the full values. The XML is UTF-8 without an XML declaration (UTF-8 is XML's default).
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .trail import (
    APPLICATION_ACTIVITY,
    BEGIN_TRANSFERRING,
    EVENT_CODES,
    EVENT_NAMES,
    EXPORT,
    IMPORT,
    INSTANCES_ACCESSED,
    SECURITY_ALERT,
    STUDY_DELETED,
    SUCCESS,
    USER_AUTHENTICATION,
    outcome_code,
)

MAX_TEXT = 256  # characters of one attribute value (actor, target, IDs; DICOM IDs are <= 64)
MAX_DETAILS = 8192  # bytes of the details JSON
OUTCOMES = (0, 4, 8, 12)

# EventActionCode per EventID (PS3.15 A.5.3): C create, R read, U update, D delete, E execute.
ACTION_CODES = {IMPORT: "C", INSTANCES_ACCESSED: "R", EXPORT: "R", STUDY_DELETED: "D",
                BEGIN_TRANSFERRING: "E", USER_AUTHENTICATION: "E", SECURITY_ALERT: "E",
                APPLICATION_ACTIVITY: "E"}

# EventTypeCode (DCM), PS3.16 CID 403 (Security Alert) and the User Authentication types.
Code = tuple[str, str]
LOGIN: Code = ("110122", "Login")
LOGOUT: Code = ("110123", "Logout")
SECURITY_CONFIGURATION: Code = ("110129", "Security Configuration")
SOFTWARE_CONFIGURATION: Code = ("110131", "Software Configuration")
RESTRICTED_FUNCTION: Code = ("110132", "Use of Restricted Function")
AUDIT_RECORDING_STOPPED: Code = ("110133", "Audit Recording Stopped")
OBJECT_SECURITY_CHANGED: Code = ("110135", "Object Security Attributes Changed")
SECURITY_ROLES_CHANGED: Code = ("110136", "Security Roles Changed")
USER_SECURITY_CHANGED: Code = ("110137", "User security Attributes Changed")
EVENT_TYPES: dict[str, Code] = {
    **dict.fromkeys(("login", "login_pin_accepted", "login_2fa", "lockout", "reauthentication",
                     "totp_replay"), LOGIN),
    **dict.fromkeys(("logout", "session_ended_by_new_login"), LOGOUT),
    # accounts and their credentials
    **dict.fromkeys(("user_created", "user_updated", "user_deleted", "user_unlocked",
                     "two_factor_reset", "pin_changed", "totp_enrolled",
                     "totp_enrollment_started", "backup_codes_generated", "backup_code_used",
                     "token_created", "token_revoked", "tokens_revoked"), USER_SECURITY_CHANGED),
    # system-wide security settings
    **dict.fromkeys(("two_factor_config_changed", "security_alert", "ae_owners_changed",
                     "modality_saved", "modality_deleted"),
                    SECURITY_CONFIGURATION),
    "nas_config_changed": SOFTWARE_CONFIGURATION,
    # the backup key changed, or the whole state replaced from a backup
    **dict.fromkeys(("backup_key_set", "backup_restored"), SECURITY_CONFIGURATION),
    # the trail itself (pruned through its gate, or found altered) and share-link PINs
    **dict.fromkeys(("audit_pruned", "audit_verification_failed", "share_pin_failed"),
                    RESTRICTED_FUNCTION),
    # accesses that could not be recorded (the observation queue overflowed)
    "audit_observations_dropped": AUDIT_RECORDING_STOPPED,
    # share links grant access to a study
    **dict.fromkeys(("share_created", "share_revoked", "share_expired"),
                    OBJECT_SECURITY_CHANGED),
}

# Participant objects.
PATIENT_NUMBER = {"csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"}
STUDY_INSTANCE_UID = {"csd-code": "110180", "codeSystemName": "DCM",
                      "originalText": "Study Instance UID"}
TRAIL_ROW = {"csd-code": "AUDITROW", "codeSystemName": "99ORTHANCNAS",
             "originalText": "Audit Trail Row"}
APPLICATION_SERVER = {"csd-code": "4", "codeSystemName": "DCM",
                      "originalText": "Application Server"}

# Not allowed in XML 1.0 (tab, LF and CR are; ElementTree escapes them in attributes).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def rfc3339(ts: float) -> str:
    """UTC with microseconds and ``Z``: ``2023-11-14T22:13:20.123456Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    """A value fit for an XML attribute: a string, XML-legal characters only, capped."""
    text = "" if value is None else str(value)
    text = _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}" if m.group() < "\x20"
                            else "\ufffd", text)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")


def _details(value: Any) -> str:
    """The details as JSON text (as stored, or serialized), capped at ``MAX_DETAILS`` bytes."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if text in ("", "{}"):
        return ""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= MAX_DETAILS:
        return text
    return raw[:MAX_DETAILS].decode("utf-8", "ignore") + "\u2026[truncated]"


def event_type(event: str, event_code: str, details: Any = None) -> list[Code]:
    """The EventTypeCodes of one plugin event (empty when PS3.16 has none that fits)."""
    code = EVENT_TYPES.get(event)
    if code is None or EVENT_CODES.get(event, event_code) != event_code:
        return []
    codes = [code]
    has_role = (isinstance(details, Mapping) and "role" in details) or (
        isinstance(details, str) and '"role":' in details)
    if event.startswith("user_") and has_role:
        codes.append(SECURITY_ROLES_CHANGED)
    return codes


def outcome_indicator(row: Mapping[str, Any]) -> int:
    """The row's EventOutcomeIndicator (0, 4, 8 or 12); derived from ``event`` and ``outcome``
    for rows written before schema 7 (empty ``event_code``, ``outcome_code`` defaulted to 0)."""
    code = row.get("outcome_code")
    if row.get("event_code") and isinstance(code, int) and code in OUTCOMES:
        return code
    return outcome_code(str(row.get("event") or ""), str(row.get("outcome") or SUCCESS))


def _coded(parent: ET.Element, tag: str, code: Mapping[str, str]) -> ET.Element:
    return ET.SubElement(parent, tag, {k: _text(v) for k, v in code.items()})


def _participant_object(root: ET.Element, object_id: str, type_code: str, role: str,
                        id_type: Mapping[str, str]) -> ET.Element:
    element = ET.SubElement(root, "ParticipantObjectIdentification", {
        "ParticipantObjectID": object_id, "ParticipantObjectTypeCode": type_code,
        "ParticipantObjectTypeCodeRole": role})
    _coded(element, "ParticipantObjectIDTypeCode", id_type)
    return element


def audit_message(row: Mapping[str, Any], *, source_id: str) -> bytes:
    """The ``AuditMessage`` XML (UTF-8) of one trail row, as ``Audit.search`` returns it or as
    read from the ``audit`` table (``details`` a dict or its JSON text)."""
    event = str(row.get("event") or "")
    event_code = str(row.get("event_code") or EVENT_CODES.get(event, APPLICATION_ACTIVITY))
    event_name = str(row.get("event_name") or EVENT_NAMES.get(event_code, event_code))
    details = row.get("details")

    root = ET.Element("AuditMessage")
    ident = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": ACTION_CODES.get(event_code, "E"),
        "EventDateTime": rfc3339(float(row.get("ts") or 0.0)),
        "EventOutcomeIndicator": str(outcome_indicator(row)),
    })
    _coded(ident, "EventID", {"csd-code": event_code, "codeSystemName": "DCM",
                              "originalText": event_name})
    for csd_code, meaning in event_type(event, event_code, details):
        _coded(ident, "EventTypeCode", {"csd-code": csd_code, "codeSystemName": "DCM",
                                        "originalText": meaning})

    participant = {"UserID": _text(row.get("actor")) or "unknown", "UserIsRequestor": "true"}
    ip = _text(row.get("ip"))
    if ip:
        participant |= {"NetworkAccessPointID": ip, "NetworkAccessPointTypeCode": "2"}
    ET.SubElement(root, "ActiveParticipant", participant)

    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": _text(source_id)})
    _coded(source, "AuditSourceTypeCode", APPLICATION_SERVER)

    study_uid = _text(row.get("study_uid"))
    if study_uid:
        _participant_object(root, study_uid, "2", "3", STUDY_INSTANCE_UID)
    patient_id = _text(row.get("patient_id"))
    if patient_id:
        _participant_object(root, patient_id, "1", "1", PATIENT_NUMBER)

    trail_row = _participant_object(root, _text(row.get("id")), "2", "13", TRAIL_ROW)
    values = {"event": _text(event), "target": _text(row.get("target")),
              "details": _details(details)}
    for kind, value in values.items():
        if value:
            ET.SubElement(trail_row, "ParticipantObjectDetail", {"type": kind,
                                                                 "value": _b64(value)})
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return xml
