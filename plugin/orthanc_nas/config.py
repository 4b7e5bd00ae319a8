"""The plugin's configuration section of orthanc.json: schema, defaults and validation.

Every key is declared once in ``SCHEMA``; validation names the offending key
(``OrthancNAS.two_factor.backup_codes_count``) and what is expected. The configuration
reference (docs/configuration.md) is checked against this schema by the tests.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .nas.storage import within

SECTION = "OrthancNAS"
ROLES = ("admin", "user", "viewer")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")
TWO_FACTOR_METHODS = ("totp", "backup_codes")
LANDING_FIELDS = ("study_date", "instance_count", "study_description", "modalities")


class ConfigError(ValueError):
    """The configuration is invalid; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(f"invalid configuration: {key}: {expected}")
        self.key = key
        self.expected = expected


Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Field:
    """One configuration key: its type, default, optional extra check and documentation."""

    kind: type | tuple[type, ...]
    default: Any
    doc: str
    check: Check | None = None


def _range(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"a number from {lo} to {hi}"


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else "one of " + ", ".join(map(repr, choices))


def _subset_of(*choices: str, empty: bool = False) -> Check:
    def check(v: list[Any]) -> str | None:
        if (not v and not empty) or any(x not in choices for x in v) or len(set(v)) != len(v):
            return ("a list" if empty else "a non-empty list") + " of distinct values among " \
                + ", ".join(map(repr, choices))
        return None

    return check


def _networks(v: list[Any]) -> str | None:
    expected = "a list of IP addresses or networks in CIDR notation"
    for item in v:
        if not isinstance(item, str):
            return expected
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return expected
    return None


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "a non-empty string"


def _public_url(v: str) -> str | None:
    if not v:
        return None
    expected = "empty, or an http(s) URL with a host and no query, e.g. https://pacs.example"
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return expected
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.username or parts.password):
        return expected
    return None


def _host_names(v: list[Any]) -> str | None:
    for item in v:
        if not (isinstance(item, str) and item and len(item) <= 253
                and re.fullmatch(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]", item)):
            return "a list of host names or addresses without scheme or port " \
                   "(e.g. 'pacs.clinic.lan', '192.168.1.10', '[fd00::1]')"
    return None


def _absolute_folders(v: list[Any]) -> str | None:
    if any(not (isinstance(p, str) and p.startswith("/") and "\x00" not in p) for p in v):
        return "a list of absolute folder paths"
    return None


def _ae_owners(v: dict[str, Any]) -> str | None:
    for aet, user in v.items():
        if not (isinstance(user, str) and 0 < len(aet) <= 16 and aet.strip() == aet):
            return "an object mapping AE titles (1 to 16 characters) to usernames"
    return None


def _clock_time(v: str) -> str | None:
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", v)
    return None if match else "a time of day as HH:MM (00:00 to 23:59)"


def _hours(v: list[Any]) -> str | None:
    if (len(v) != 2 or any(isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 24
                           for h in v) or v[0] == v[1]):
        return "[start, end]: two different whole hours from 0 to 24"
    return None


def migrate_nas(raw: Any) -> Any:
    """Old settings read as new ones: the boolean ``verify`` (true was an immediate read-back,
    false no check at all; both now confirm at least the size)."""
    if isinstance(raw, dict) and isinstance(raw.get("verify"), bool):
        return {**raw, "verify": "readback" if raw["verify"] else "size"}
    return raw


def _layout(v: str) -> str | None:
    from .nas.layout import LayoutError, check_template

    try:
        check_template(v)
    except LayoutError as exc:
        return str(exc)
    return None


def _policy_rules(v: list[Any]) -> str | None:
    for i, rule in enumerate(v):
        if not isinstance(rule, dict) or set(rule) != {"methods", "pattern", "roles"}:
            return f"rule {i}: an object with exactly the keys methods, pattern, roles"
        if not isinstance(rule["methods"], list) or not rule["methods"] or any(
            m not in (*HTTP_METHODS, "*") for m in rule["methods"]
        ):
            return f"rule {i}: methods must list values among {HTTP_METHODS} or '*'"
        if not isinstance(rule["roles"], list) or any(r not in ROLES for r in rule["roles"]):
            return f"rule {i}: roles must list values among {ROLES}"
        if not isinstance(rule["pattern"], str):
            return f"rule {i}: pattern must be a string"
        try:
            re.compile(rule["pattern"])
        except re.error as exc:
            return f"rule {i}: pattern is not a valid regular expression ({exc})"
    return None


def default_policy() -> list[dict[str, Any]]:
    """The role policy shipped with the plugin (also written out in orthanc.json)."""
    text = resources.files("orthanc_nas").joinpath("default_policy.json").read_text("utf-8")
    rules: list[dict[str, Any]] = json.loads(text)
    return rules


Schema = Mapping[str, "Field | Schema"]

SCHEMA: Schema = {
    "data_dir": Field(str, "", "Directory of the plugin database and key files "
                      "(orthanc.json sets it from ORTHANC_NAS_DATA_DIR).", _non_empty),
    "public_url": Field(str, "", "External base URL (e.g. https://pacs.clinic.example): share "
                        "links point there and it is the only origin accepted for browser "
                        "writes. Empty: the request's Host, if allowed_hosts lists it.",
                        _public_url),
    "allowed_hosts": Field(list, [], "Host names share links may be built from when public_url "
                           "is empty (from the request's Host header). localhost, 127.0.0.1, "
                           "[::1] and this machine's host name are always allowed.",
                           _host_names),
    "database": {
        "backend": Field(str, "sqlite", "Storage backend of the plugin's own state: sqlite "
                         "(one server), or postgresql (replicas sharing it; connection from "
                         "ORTHANC_NAS_PG_DSN or libpq's PG* variables, docs/scaling.md).",
                         _one_of("sqlite", "postgresql")),
        "path": Field(str, "", "SQLite file; empty means <data_dir>/orthanc-nas.sqlite."),
    },
    "auth": {
        "pin_min_length": Field(int, 10, "Minimum PIN length (floor 8).", _range(8, 64)),
        "pin_max_length": Field(int, 128, "Maximum PIN length.", _range(64, 1024)),
        "pin_min_score": Field(int, 3, "Least zxcvbn strength score (0 to 4) of a new PIN; 3 "
                               "means about 10^8 guesses or more. 0 turns the estimate off.",
                               _range(0, 4)),
        "bcrypt_cost": Field(int, 12, "bcrypt work factor for PINs.", _range(4, 16)),
        "session_idle_minutes": Field(int, 30, "Idle timeout of a session.", _range(1, 1440)),
        "session_absolute_hours": Field(int, 12, "Absolute lifetime of a session.",
                                        _range(1, 168)),
        "pending_login_minutes": Field(int, 5, "Time allowed to enter the second factor.",
                                       _range(1, 30)),
        "cookie_secure": Field(str, "auto", "Secure cookie flag: 'auto' (when public_url or the "
                               "request is https; X-Forwarded-Proto counts from "
                               "trusted_proxies only), 'always' or 'never'.",
                               _one_of("auto", "always", "never")),
        "ip_max_failures": Field(int, 30, "Failed logins allowed per client IP per window "
                                 "before it is throttled (503 + Retry-After).", _range(1, 100000)),
        "ip_window_minutes": Field(int, 15, "Window of the per-IP throttle.", _range(1, 1440)),
        "token_default_days": Field(int, 90, "Lifetime of a personal API token created "
                                    "without expires_in_days.", _range(1, 3650)),
        "token_max_days": Field(int, 365, "Longest lifetime of a personal API token, also for "
                                "tokens stored before lifetimes were capped (counted from "
                                "their creation).", _range(1, 3650)),
        "account_max_failures": Field(int, 100, "Failed PIN or code checks on one account, "
                                      "from all addresses together, within "
                                      "account_failure_window_hours, after which it stays "
                                      "locked until an admin or the command line unlocks it.",
                                      _range(10, 100000)),
        "account_failure_window_hours": Field(int, 24, "Window of that account-wide count "
                                              "(a successful login also resets it).",
                                              _range(1, 8760)),
        "max_body_bytes": Field(int, 65536, "Largest JSON body accepted by the plugin's API.",
                                _range(1024, 10485760)),
        "trusted_proxies": Field(list, [], "Addresses or networks of reverse proxies (e.g. "
                                 "'127.0.0.1', '10.0.0.0/24') whose X-Forwarded-For names the "
                                 "client (for throttles and the audit trail). Empty: the header "
                                 "is never trusted.", _networks),
    },
    "two_factor": {
        "enabled": Field(bool, True, "Two-factor authentication system-wide."),
        "required_for_admin": Field(bool, True, "Admins must use a second factor."),
        "required_for_users": Field(bool, True, "Users must use a second factor."),
        "required_for_viewers": Field(bool, False, "Viewers must use a second factor."),
        "allowed_methods": Field(list, ["totp", "backup_codes"], "Second factors accepted.",
                                 _subset_of(*TWO_FACTOR_METHODS)),
        "totp_issuer": Field(str, "Orthanc NAS", "Issuer shown in authenticator apps.",
                             _non_empty),
        "backup_codes_count": Field(int, 10, "Backup codes per set.", _range(4, 20)),
        "max_failed_attempts": Field(int, 5, "Consecutive failures (PIN or second factor) on "
                                     "one account from one client address before that "
                                     "address is locked out of that account.", _range(1, 100)),
        "lockout_duration_minutes": Field(int, 15, "Duration of that lockout.",
                                          _range(1, 1440)),
    },
    "shares": {
        "default_expiry_hours": Field(int, 72, "Lifetime of a share link when none is asked.",
                                      _range(1, 8760)),
        "max_expiry_hours": Field(int, 720, "Longest lifetime a share link may be given.",
                                  _range(1, 8760)),
        "default_max_views": Field(int, 3, "Openings allowed when none is asked.",
                                   _range(1, 10000)),
        "max_views": Field(int, 50, "Most openings a share link may allow.", _range(1, 10000)),
        "view_minutes": Field(int, 60, "How long one opening lets the viewer look.",
                              _range(1, 1440)),
        "pin_max_attempts": Field(int, 5, "Wrong PINs before a share link is locked.",
                                  _range(1, 100)),
        "ip_max_failures": Field(int, 20, "Unknown share tokens tried per client IP per window "
                                 "before it is throttled.", _range(1, 100000)),
        "ip_window_minutes": Field(int, 15, "Window of that throttle.", _range(1, 1440)),
        "landing_fields": Field(list, ["study_date", "instance_count"], "What a share link's "
                                "page shows before View (no patient data): among "
                                "'study_date', 'instance_count', 'study_description' (may "
                                "hold patient details), 'modalities'.",
                                _subset_of(*LANDING_FIELDS, empty=True)),
    },
    "audit": {
        "retention_days": Field(int, 2190, "Audit rows older than this are pruned (six years); "
                                "pruning is itself audited and keeps the chain verifiable.",
                                _range(30, 36500)),
        "head_interval_minutes": Field(int, 10, "How often the chain head is written to "
                                       "Orthanc's log, to <data_dir>/audit-head.json and, when "
                                       "mirroring is on, to the NAS.", _range(1, 1440)),
        "syslog": {
            "enabled": Field(bool, False, "Forward the audit trail to a syslog collector as "
                             "DICOM audit messages (RFC 5424); rows stay queued while it is "
                             "unreachable."),
            "host": Field(str, "", "Syslog collector host name or address (required when "
                          "enabled)."),
            "port": Field(int, 514, "Syslog collector port.", _range(1, 65535)),
            "protocol": Field(str, "tcp", "'tcp' (RFC 6587 octet counting, reconnects) or "
                              "'udp' (RFC 5426; delivery cannot be confirmed).",
                              _one_of("udp", "tcp")),
            "facility": Field(int, 10, "Syslog facility (10: security/authorization).",
                              _range(0, 23)),
            "app_name": Field(str, "orthanc-nas", "APP-NAME of the syslog messages."),
            "source_id": Field(str, "", "AuditSourceID in the messages; empty: the host name."),
        },
    },
    "backup": {
        "enabled": Field(bool, True, "Scheduled encrypted backups of the plugin's state to the "
                         "NAS, once an admin has set a backup passphrase (docs/backup.md)."),
        "every_hours": Field(int, 24, "Hours between scheduled backups (1 to 24), counted "
                             "from start_time each day.", _range(1, 24)),
        "start_time": Field(str, "02:00", "Local time of the day's first scheduled backup "
                            "(HH:MM).", _clock_time),
        "keep_daily": Field(int, 7, "Backups kept: the newest of each of this many days.",
                            _range(1, 365)),
        "keep_weekly": Field(int, 4, "Also kept: the newest of each of this many ISO weeks.",
                             _range(0, 520)),
    },
    "visibility": Field(str, "shared", "Who sees which study in the plugin's pages: 'shared' "
                        "(every role sees every study, as in Orthanc Explorer; 'mine' is a "
                        "filter) or 'strict' (a user sees only own and assigned studies "
                        "everywhere: refused at start where it cannot be enforced, which is "
                        "every Orthanc without labels, e.g. 1.10.1; docs/security.md).",
                        _one_of("shared", "strict")),
    "ae_owners": Field(dict, {}, "Calling AE title -> username for modalities declared in "
                       "DicomModalities: what that AE sends belongs to that user (modalities "
                       "declared on the admin screen carry their own owner).",
                       _ae_owners),
    "access_policy": Field(list, None, "Role policy: ordered rules {methods, pattern, roles}; "
                           "the first rule whose method and full-match pattern fit decides; "
                           "no match means admin only. Absent: the shipped default.",
                           _policy_rules),
    "nas": {
        "enabled": Field(bool, False, "Mirror received instances to the NAS."),
        "type": Field(str, "local", "'smb' or 'local' (a folder, e.g. a mounted share).",
                      _one_of("smb", "local")),
        "host": Field(str, "", "SMB server host name or address."),
        "port": Field(int, 445, "SMB port.", _range(1, 65535)),
        "share": Field(str, "", "SMB share name."),
        "username": Field(str, "", "SMB user."),
        "password": Field(str, "", "SMB password; orthanc.json takes it from "
                          "ORTHANC_NAS_SMB_PASSWORD. Never logged nor returned."),
        "path": Field(str, "", "Folder inside the share (smb) or the local folder (local): an "
                      "absolute path inside one of local_roots."),
        "local_roots": Field(list, [], "Folders a local NAS may use (absolute paths; symlinks "
                             "resolved): nas.path must be one of them or inside one. Only "
                             "orthanc.json sets this; the API cannot change it.",
                             _absolute_folders),
        "layout": Field(str, "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/"
                        "{SOPInstanceUID}.dcm", "Path of each instance on the NAS; fields: "
                        "PatientID, PatientName, StudyInstanceUID, SeriesInstanceUID, "
                        "SOPInstanceUID, StudyDate, Modality, AccessionNumber, "
                        "StudyDescription, SeriesNumber, InstanceNumber (values sanitized); "
                        "file names always end in .dcm.",
                        _layout),
        "encrypt": Field(bool, False, "Require SMB 3 encryption."),
        "require_signing": Field(bool, True, "Require SMB signing."),
        "timeout_seconds": Field(int, 30, "SMB connection timeout.", _range(1, 600)),
        "engine": Field(str, "libsmbclient", "SMB client: 'libsmbclient' (Samba's own, "
                        "through pysmbc) or 'smbprotocol' (pure Python, where libsmbclient "
                        "cannot be installed).", _one_of("libsmbclient", "smbprotocol")),
        "verify": Field(str, "size", "'size': write, flush, confirm the size the NAS holds, "
                        "then rename (the scrub re-reads every copy later); 'readback': also "
                        "read each copy back and compare its SHA-256 before the rename. The "
                        "old booleans are read as true = 'readback', false = 'size'.",
                        _one_of("size", "readback")),
        "parallel": Field(int, 4, "Copies in flight at once (each in a process of its own, "
                          "with its own SMB session).", _range(1, 16)),
        "scrub_mb_per_second": Field(int, 20, "Rate at which the scrub re-reads copies on the "
                                     "NAS and compares them with the SHA-256 recorded when "
                                     "they were spooled; 0 turns it off.", _range(0, 10_000)),
        "scrub_hours": Field(list, [0, 24], "[start, end) local hours when the scrub may read "
                             "(wraps past midnight, e.g. [20, 6]); [0, 24] is always.",
                             _hours),
        "max_attempts": Field(int, 10, "Failed attempts before an item is parked as failed "
                              "(connection failures do not count).", _range(1, 1000)),
        "retry_base_seconds": Field(int, 5, "First retry delay (doubles each attempt, with "
                                    "jitter).", _range(1, 3600)),
        "retry_max_seconds": Field(int, 300, "Longest retry delay.", _range(1, 86400)),
        "on_delete": Field(str, "keep", "When Orthanc deletes an instance: 'keep' the NAS copy "
                           "(the NAS is the archive) or 'propagate' the deletion.",
                           _one_of("keep", "propagate")),
    },
}


@dataclass(frozen=True)
class Config:
    """The validated plugin configuration, as nested plain dictionaries with every default."""

    values: dict[str, Any] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    def section(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self.values[name]
        return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
             dict: "an object", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def validate_section(schema: Schema, raw: Any, path: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(path, "an object")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", "unknown key; expected one of "
                          + ", ".join(sorted(schema)))
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        where = f"{path}.{key}"
        if not isinstance(spec, Field):
            out[key] = validate_section(spec, raw.get(key, {}), where)
            continue
        if key not in raw or (raw[key] is None and spec.default is None):
            out[key] = spec.default
            continue
        value = raw[key]
        # bool is a subclass of int: refuse true where a number is expected.
        if not isinstance(value, spec.kind) or (isinstance(value, bool) and spec.kind is not bool):
            raise ConfigError(where, _type_name(spec.kind))
        problem = spec.check(value) if spec.check else None
        if problem:
            raise ConfigError(where, problem)
        out[key] = value
    return out


def load(orthanc_config: Mapping[str, Any]) -> Config:
    """Validates the plugin section of Orthanc's whole configuration; raises ConfigError."""
    section = orthanc_config.get(SECTION, {})
    if isinstance(section, dict) and "nas" in section:
        section = {**section, "nas": migrate_nas(section["nas"])}
    values = validate_section(SCHEMA, section, SECTION)
    if not values["data_dir"].strip():
        raise ConfigError(f"{SECTION}.data_dir", "a non-empty string (a directory path)")
    if values["access_policy"] is None:
        values["access_policy"] = default_policy()
    check_nas(values["nas"], f"{SECTION}.nas")
    shares = values["shares"]
    if shares["default_expiry_hours"] > shares["max_expiry_hours"]:
        raise ConfigError(f"{SECTION}.shares.default_expiry_hours", "at most max_expiry_hours")
    if shares["default_max_views"] > shares["max_views"]:
        raise ConfigError(f"{SECTION}.shares.default_max_views", "at most max_views")
    syslog = values["audit"]["syslog"]
    if syslog["enabled"] and not syslog["host"].strip():
        raise ConfigError(f"{SECTION}.audit.syslog.host",
                          "a non-empty string when audit.syslog.enabled is true")
    auth = values["auth"]
    if auth["pin_max_length"] < auth["pin_min_length"]:
        raise ConfigError(f"{SECTION}.auth.pin_max_length", "at least auth.pin_min_length")
    if auth["token_default_days"] > auth["token_max_days"]:
        raise ConfigError(f"{SECTION}.auth.token_default_days", "at most auth.token_max_days")
    return Config(values)


def check_nas(nas: dict[str, Any], path: str) -> None:
    """Cross-key rules of the NAS section (also applied to run-time changes)."""
    if nas["enabled"]:
        required = ("host", "share", "username") if nas["type"] == "smb" else ("path",)
        for key in required:
            if not nas[key]:
                raise ConfigError(f"{path}.{key}",
                                  f"a non-empty string when nas.type is {nas['type']!r}")
    check_local_path(nas, path)
    if nas["retry_max_seconds"] < nas["retry_base_seconds"]:
        raise ConfigError(f"{path}.retry_max_seconds", "at least retry_base_seconds")


def check_local_path(nas: dict[str, Any], path: str) -> None:
    """A local NAS folder must be inside a root listed in orthanc.json (nas.local_roots)."""
    if nas["type"] != "local" or not nas["path"]:
        return
    if not nas["local_roots"]:
        raise ConfigError(f"{path}.path", "a local folder needs nas.local_roots in orthanc.json "
                          "(the folders the NAS may use); none is listed")
    if not within(nas["path"], nas["local_roots"]):
        raise ConfigError(f"{path}.path", "an absolute folder inside one of nas.local_roots ("
                          + ", ".join(nas["local_roots"]) + "), symlinks resolved")


def documented_keys(schema: Schema = SCHEMA, prefix: str = "") -> dict[str, Field]:
    """Every leaf key as a dotted path (for docs/configuration.md and its test)."""
    out: dict[str, Field] = {}
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, Field):
            out[name] = spec
        else:
            out.update(documented_keys(spec, name + "."))
    return out


def reference_table() -> str:
    """The configuration reference of docs/configuration.md, generated from ``SCHEMA``."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, spec in documented_keys().items():
        default = "the shipped policy" if key == "access_policy" else json.dumps(spec.default)
        rows.append(f"| `{SECTION}.{key}` | `{default}` | {spec.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
