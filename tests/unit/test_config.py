"""config.py: defaults, every kind of refusal (naming the dotted key), and orthanc.json."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, render_config
from orthanc_nas import config
from orthanc_nas.config import SECTION, ConfigError, Field

ORTHANC_JSON = REPO / "orthanc.json"


def load(section: dict[str, Any]) -> config.Config:
    return config.load({SECTION: {"data_dir": "/srv/orthanc-nas", **section}})


def refusal(section: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(section)
    return info.value


def shipped(env: dict[str, str]) -> dict[str, Any]:
    rendered: dict[str, Any] = render_config(ORTHANC_JSON.read_text(), env)
    return rendered


def leaves(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in config.documented_keys():
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---- defaults ------------------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    cfg = config.load({SECTION: {"data_dir": "/srv/x"}})
    assert cfg.get("data_dir") == "/srv/x"
    assert cfg.get("public_url") == ""
    assert cfg.get("database.backend") == "sqlite"
    assert cfg.get("database.path") == ""
    auth = cfg.section("auth")
    assert auth == {"pin_min_length": 10, "pin_max_length": 128, "pin_min_score": 3,
                    "bcrypt_cost": 12, "session_idle_minutes": 30, "session_absolute_hours": 12,
                    "pending_login_minutes": 5, "cookie_secure": "auto",
                    "ip_max_failures": 30, "ip_window_minutes": 15, "token_default_days": 90,
                    "token_max_days": 365, "account_max_failures": 100,
                    "account_failure_window_hours": 24, "max_body_bytes": 65536,
                    "trusted_proxies": []}
    assert cfg.section("two_factor") == {
        "enabled": True, "required_for_admin": True, "required_for_users": True,
        "required_for_viewers": False, "allowed_methods": ["totp", "backup_codes"],
        "totp_issuer": "Orthanc NAS", "backup_codes_count": 10, "max_failed_attempts": 5,
        "lockout_duration_minutes": 15}
    nas = cfg.section("nas")
    assert {k: nas[k] for k in ("enabled", "type", "host", "port", "share", "username",
                                "password", "path")} == {
        "enabled": False, "type": "local", "host": "", "port": 445, "share": "",
        "username": "", "password": "", "path": ""}
    assert cfg.get("access_policy") == config.default_policy()


def test_absent_section_is_refused_for_want_of_a_data_dir() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load({})
    assert err.value.key == "OrthancNAS.data_dir"


def test_only_data_dir_gives_every_default() -> None:
    cfg = config.load({config.SECTION: {"data_dir": "/var/lib/x"}})
    assert set(cfg.values) == set(config.SCHEMA)
    assert {"data_dir", "public_url", "database", "auth", "two_factor", "access_policy",
            "nas"} <= set(cfg.values)
    assert cfg.get("auth.bcrypt_cost") == 12


def test_given_values_override_defaults_and_others_stay() -> None:
    cfg = load({"auth": {"bcrypt_cost": 4}, "two_factor": {"allowed_methods": ["totp"]}})
    assert cfg.get("auth.bcrypt_cost") == 4
    assert cfg.get("auth.pin_min_length") == 10
    assert cfg.get("two_factor.allowed_methods") == ["totp"]
    assert cfg.get("two_factor.enabled") is True


def test_null_access_policy_means_the_shipped_default() -> None:
    assert load({"access_policy": None}).get("access_policy") == config.default_policy()


def test_a_custom_access_policy_is_kept() -> None:
    rules = [{"methods": ["*"], "pattern": "/.*", "roles": ["admin", "user"]}]
    assert load({"access_policy": rules}).get("access_policy") == rules


# ---- refusals ------------------------------------------------------------------------------

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, section, dotted key, words of the expectation)
    ("unknown top-level key", {"colour": "blue"}, "OrthancNAS.colour", "unknown key"),
    ("unknown nested key", {"two_factor": {"enabeld": True}}, "OrthancNAS.two_factor.enabeld",
     "unknown key"),
    ("section not an object", {"auth": 5}, "OrthancNAS.auth", "an object"),
    ("string for int", {"auth": {"bcrypt_cost": "12"}}, "OrthancNAS.auth.bcrypt_cost",
     "an integer"),
    ("float for int", {"auth": {"bcrypt_cost": 12.0}}, "OrthancNAS.auth.bcrypt_cost",
     "an integer"),
    ("int for bool", {"two_factor": {"enabled": 1}}, "OrthancNAS.two_factor.enabled",
     "a boolean"),
    ("int for string", {"data_dir": 5}, "OrthancNAS.data_dir", "a string"),
    ("object for list", {"access_policy": {}}, "OrthancNAS.access_policy", "a list"),
    ("true for int", {"auth": {"bcrypt_cost": True}}, "OrthancNAS.auth.bcrypt_cost",
     "an integer"),
    ("false for int", {"nas": {"port": False}}, "OrthancNAS.nas.port", "an integer"),
    ("below range", {"auth": {"pin_min_length": 4}}, "OrthancNAS.auth.pin_min_length",
     "a number from 8 to 64"),
    ("above range", {"auth": {"bcrypt_cost": 17}}, "OrthancNAS.auth.bcrypt_cost",
     "a number from 4 to 16"),
    ("port zero", {"nas": {"port": 0}}, "OrthancNAS.nas.port", "a number from 1 to 65535"),
    ("backup codes", {"two_factor": {"backup_codes_count": 3}},
     "OrthancNAS.two_factor.backup_codes_count", "a number from 4 to 20"),
    ("body too small", {"auth": {"max_body_bytes": 1023}}, "OrthancNAS.auth.max_body_bytes",
     "a number from 1024 to 10485760"),
    ("not one of", {"auth": {"cookie_secure": "sometimes"}}, "OrthancNAS.auth.cookie_secure",
     "one of 'auto', 'always', 'never'"),
    ("nas type", {"nas": {"type": "ftp"}}, "OrthancNAS.nas.type", "one of 'smb', 'local'"),
    ("proxy not an address", {"auth": {"trusted_proxies": ["proxy.clinic"]}},
     "OrthancNAS.auth.trusted_proxies", "a list of IP addresses or networks"),
    ("proxy not a string", {"auth": {"trusted_proxies": [10]}},
     "OrthancNAS.auth.trusted_proxies", "a list of IP addresses or networks"),
    ("backend", {"database": {"backend": "postgres"}}, "OrthancNAS.database.backend",
     "one of 'sqlite'"),
    ("empty data_dir", {"data_dir": ""}, "OrthancNAS.data_dir", "a non-empty string"),
    ("blank issuer", {"two_factor": {"totp_issuer": "  "}}, "OrthancNAS.two_factor.totp_issuer",
     "a non-empty string"),
    ("methods not a subset", {"two_factor": {"allowed_methods": ["totp", "sms"]}},
     "OrthancNAS.two_factor.allowed_methods",
     "a non-empty list of distinct values among 'totp', 'backup_codes'"),
    ("methods empty", {"two_factor": {"allowed_methods": []}},
     "OrthancNAS.two_factor.allowed_methods", "a non-empty list of distinct values"),
    ("methods duplicated", {"two_factor": {"allowed_methods": ["totp", "totp"]}},
     "OrthancNAS.two_factor.allowed_methods", "a non-empty list of distinct values"),
    ("methods not a list", {"two_factor": {"allowed_methods": "totp"}},
     "OrthancNAS.two_factor.allowed_methods", "a list"),
    ("smb without host", {"nas": {"enabled": True, "type": "smb", "share": "s",
                                  "username": "u"}},
     "OrthancNAS.nas.host", "a non-empty string when nas.type is 'smb'"),
    ("smb without share", {"nas": {"enabled": True, "type": "smb", "host": "nas",
                                   "username": "u"}},
     "OrthancNAS.nas.share", "a non-empty string when nas.type is 'smb'"),
    ("smb without username", {"nas": {"enabled": True, "type": "smb", "host": "nas",
                                      "share": "s"}},
     "OrthancNAS.nas.username", "a non-empty string when nas.type is 'smb'"),
    ("local without path", {"nas": {"enabled": True, "type": "local"}},
     "OrthancNAS.nas.path", "a non-empty string when nas.type is 'local'"),
    ("local path without roots", {"nas": {"type": "local", "path": "/srv/nas"}},
     "OrthancNAS.nas.path", "needs nas.local_roots"),
    ("local path outside its roots", {"nas": {"type": "local", "path": "/",
                                              "local_roots": ["/srv/nas"]}},
     "OrthancNAS.nas.path", "inside one of nas.local_roots"),
    ("local path relative", {"nas": {"type": "local", "path": "../",
                                     "local_roots": ["/srv/nas"]}},
     "OrthancNAS.nas.path", "an absolute folder inside"),
    ("local root relative", {"nas": {"local_roots": ["nas"]}}, "OrthancNAS.nas.local_roots",
     "absolute folder paths"),
    ("public_url with a path only", {"public_url": "pacs.example"}, "OrthancNAS.public_url",
     "an http(s) URL"),
    ("public_url javascript", {"public_url": "javascript:alert(1)"}, "OrthancNAS.public_url",
     "an http(s) URL"),
    ("allowed host with a scheme", {"allowed_hosts": ["https://pacs"]},
     "OrthancNAS.allowed_hosts", "without scheme or port"),
    ("landing field unknown", {"shares": {"landing_fields": ["patient_name"]}},
     "OrthancNAS.shares.landing_fields", "among 'study_date'"),
    ("pin_min_length above its range", {"auth": {"pin_min_length": 65,
                                                  "pin_max_length": 64}},
     "OrthancNAS.auth.pin_min_length", "a number from 8 to 64"),
]


@pytest.mark.parametrize(("section", "key", "expected"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_refusal_names_the_key_and_the_expectation(section: dict[str, Any], key: str,
                                                   expected: str) -> None:
    err = refusal(section)
    assert err.key == key
    assert expected in err.expected
    assert str(err) == f"invalid configuration: {key}: {err.expected}"


def test_unknown_key_lists_the_known_ones() -> None:
    err = refusal({"two_factor": {"enabeld": True}})
    assert "enabled" in err.expected and "max_failed_attempts" in err.expected


def test_section_that_is_not_an_object() -> None:
    with pytest.raises(ConfigError) as info:
        config.load({SECTION: ["not", "an", "object"]})
    assert info.value.key == "OrthancNAS"
    assert info.value.expected == "an object"


def test_nas_disabled_needs_nothing_and_complete_nas_is_accepted() -> None:
    assert load({"nas": {"enabled": False, "type": "smb"}}).get("nas.enabled") is False
    smb = load({"nas": {"enabled": True, "type": "smb", "host": "nas", "share": "pacs",
                        "username": "orthanc"}})
    assert smb.get("nas.host") == "nas"
    assert smb.get("nas.port") == 445
    local = {"enabled": True, "path": "/mnt/nas/pacs", "local_roots": ["/mnt/nas"]}
    assert load({"nas": local}).get("nas.path") == "/mnt/nas/pacs"


def test_pin_length_bounds_meet_at_64() -> None:
    cfg = load({"auth": {"pin_min_length": 64, "pin_max_length": 64}})
    assert (cfg.get("auth.pin_min_length"), cfg.get("auth.pin_max_length")) == (64, 64)


def test_pin_max_length_below_pin_min_length(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shipped ranges (8..64 and 64..1024) cannot produce max < min; widen the minimum's
    # range to reach the cross-check itself.
    auth = config.SCHEMA["auth"]
    assert isinstance(auth, dict)
    monkeypatch.setitem(auth, "pin_min_length",
                        Field(int, 10, "test", lambda v: None if 8 <= v <= 500 else "8..500"))
    err = refusal({"auth": {"pin_min_length": 200, "pin_max_length": 100}})
    assert err.key == "OrthancNAS.auth.pin_max_length"
    assert err.expected == "at least auth.pin_min_length"
    assert load({"auth": {"pin_min_length": 100, "pin_max_length": 100}})


GOOD_RULE = {"methods": ["GET"], "pattern": "/patients", "roles": ["viewer"]}

BAD_RULES: list[tuple[str, Any, str]] = [
    ("missing roles", {"methods": ["GET"], "pattern": "/x"},
     "rule 0: an object with exactly the keys methods, pattern, roles"),
    ("missing pattern", {"methods": ["GET"], "roles": ["admin"]},
     "rule 0: an object with exactly the keys"),
    ("extra key", {**GOOD_RULE, "comment": "hi"}, "rule 0: an object with exactly the keys"),
    ("not an object", "GET /patients viewer", "rule 0: an object with exactly the keys"),
    ("lower-case method", {**GOOD_RULE, "methods": ["get"]}, "rule 0: methods must list"),
    ("unknown method", {**GOOD_RULE, "methods": ["PATCH"]}, "rule 0: methods must list"),
    ("no method", {**GOOD_RULE, "methods": []}, "rule 0: methods must list"),
    ("methods a string", {**GOOD_RULE, "methods": "GET"}, "rule 0: methods must list"),
    ("unknown role", {**GOOD_RULE, "roles": ["viewer", "root"]}, "rule 0: roles must list"),
    ("roles a string", {**GOOD_RULE, "roles": "admin"}, "rule 0: roles must list"),
    ("pattern not a string", {**GOOD_RULE, "pattern": 5}, "rule 0: pattern must be a string"),
    ("bad regex", {**GOOD_RULE, "pattern": "/(patients"},
     "rule 0: pattern is not a valid regular expression"),
    ("bad class", {**GOOD_RULE, "pattern": "/[a-"},
     "rule 0: pattern is not a valid regular expression"),
]


@pytest.mark.parametrize(("rule", "expected"), [b[1:] for b in BAD_RULES],
                         ids=[b[0] for b in BAD_RULES])
def test_invalid_policy_rule(rule: Any, expected: str) -> None:
    err = refusal({"access_policy": [rule]})
    assert err.key == "OrthancNAS.access_policy"
    assert err.expected.startswith(expected)


def test_invalid_policy_rule_is_numbered() -> None:
    err = refusal({"access_policy": [GOOD_RULE, GOOD_RULE, {**GOOD_RULE, "roles": ["x"]}]})
    assert err.expected.startswith("rule 2: roles must list")


def test_star_method_and_empty_roles_are_valid_rules() -> None:
    rules = [{"methods": ["*"], "pattern": "/tools/.*", "roles": []}]
    assert load({"access_policy": rules}).get("access_policy") == rules


def test_validation_does_not_change_the_input() -> None:
    section = {"data_dir": "/srv/x", "auth": {"bcrypt_cost": 4}}
    before = copy.deepcopy(section)
    config.load({SECTION: section})
    assert section == before


# ---- the shipped orthanc.json -----------------------------------------------------------


def test_shipped_orthanc_json_validates(tmp_path: Path) -> None:
    cfg = config.load(shipped({"ORTHANC_NAS_DATA_DIR": str(tmp_path),
                               "ORTHANC_NAS_SMB_PASSWORD": "secret"}))
    assert cfg.get("data_dir") == str(tmp_path)
    assert cfg.get("nas.password") == "secret"


def test_shipped_access_policy_is_the_default_policy(tmp_path: Path) -> None:
    raw = shipped({"ORTHANC_NAS_DATA_DIR": str(tmp_path)})
    assert raw[SECTION]["access_policy"] == config.default_policy()
    cfg = config.load(raw)
    assert cfg.get("access_policy") == config.default_policy()


def test_shipped_orthanc_json_spells_out_every_default(tmp_path: Path) -> None:
    raw = shipped({"ORTHANC_NAS_DATA_DIR": str(tmp_path)})
    given = leaves(raw[SECTION])
    documented = config.documented_keys()
    assert set(given) == set(documented)
    for key, spec in documented.items():
        if key in ("data_dir", "nas.password", "access_policy"):
            continue  # from the environment, or the default policy itself (tested above)
        assert given[key] == spec.default, key


def test_shipped_orthanc_json_refuses_to_run_without_a_data_dir() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(shipped({}))
    assert info.value.key == "OrthancNAS.data_dir"


def test_default_policy_is_itself_valid() -> None:
    rules = config.default_policy()
    assert rules
    assert config._policy_rules(rules) is None


# ---- documented keys ------------------------------------------------------------------------

def schema_leaves(schema: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, spec in schema.items():
        if isinstance(spec, Field):
            out.add(prefix + key)
        else:
            out |= schema_leaves(spec, f"{prefix}{key}.")
    return out


# Keys the plugin is known to have (more may be added: they are checked by walking SCHEMA).
KNOWN_KEYS = {
    "data_dir", "public_url", "database.backend", "database.path",
    "auth.pin_min_length", "auth.pin_max_length", "auth.bcrypt_cost",
    "auth.session_idle_minutes", "auth.session_absolute_hours", "auth.pending_login_minutes",
    "auth.cookie_secure", "auth.ip_max_failures", "auth.ip_window_minutes",
    "auth.token_max_days", "auth.max_body_bytes",
    "two_factor.enabled", "two_factor.required_for_admin", "two_factor.required_for_users",
    "two_factor.required_for_viewers", "two_factor.allowed_methods", "two_factor.totp_issuer",
    "two_factor.backup_codes_count", "two_factor.max_failed_attempts",
    "two_factor.lockout_duration_minutes",
    "access_policy",
    "nas.enabled", "nas.type", "nas.host", "nas.port", "nas.share", "nas.username",
    "nas.password", "nas.path",
}


def test_documented_keys_lists_every_leaf_key() -> None:
    documented = config.documented_keys()
    assert set(documented) >= KNOWN_KEYS
    assert set(documented) == schema_leaves(config.SCHEMA)
    assert set(documented) == set(leaves(config.load({SECTION: {"data_dir": "/x"}}).values))
    for key, spec in documented.items():
        assert isinstance(spec, Field), key
        assert spec.doc.strip(), f"{key} has no documentation"


@pytest.mark.parametrize(("old", "new"), [(True, "readback"), (False, "size")])
def test_the_old_boolean_verify_is_read_as_a_mode(old: bool, new: str) -> None:
    cfg = config.load({"OrthancNAS": {"data_dir": "/d", "nas": {"verify": old}}})
    assert cfg.get("nas.verify") == new
    assert config.migrate_nas({"verify": old, "port": 1}) == {"verify": new, "port": 1}


@pytest.mark.parametrize(("key", "value"), [
    ("engine", "samba"), ("verify", "never"), ("parallel", 0), ("parallel", 17),
    ("scrub_mb_per_second", -1), ("scrub_hours", [5, 5]), ("scrub_hours", [0, 25]),
    ("scrub_hours", [1]), ("scrub_hours", [True, 3])])
def test_new_nas_settings_are_checked(key: str, value: object) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load({"OrthancNAS": {"data_dir": "/d", "nas": {key: value}}})
    assert caught.value.key == f"OrthancNAS.nas.{key}"
