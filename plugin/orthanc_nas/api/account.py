"""The caller's own account: profile, PIN, TOTP enrollment, backup codes, API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..auth.access import CREDENTIALS, ENROLLING, Principal, signed_in
from ..auth.pins import PinRejected
from ..openapi import INTEGER, obj, text
from ..routing import Call, route
from ..web import ApiError, Response, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..services import Services

MAX_PREFERENCES_BYTES = 4096


def _session_of(svc: Services, caller: Principal) -> dict[str, Any] | None:
    if caller.session_hash is None:
        return None
    for s in svc.sessions.active_for(caller.user.id):
        if s.id_hash == caller.session_hash:
            return {"created_at": s.created_at, "last_seen": s.last_seen,
                    "idle_expires_at": s.last_seen + svc.sessions.idle,
                    "expires_at": s.expires_at, "ip": s.ip, "user_agent": s.user_agent}
    return None


def profile(svc: Services, call: Call) -> Response:
    caller = call.caller
    user = caller.user
    tf = svc.two_factor()
    return json_response({
        "user": user.public(svc.clock.now()),
        "via": caller.via,
        "session": _session_of(svc, caller),
        "must_enroll_totp": caller.must_enroll_totp,
        "two_factor": {"enabled": tf["enabled"], "totp_enabled": user.totp_enabled,
                       "allowed_methods": tf["allowed_methods"],
                       "backup_codes_left": svc.auth.backup_codes_left(user.id)},
    })


def update_profile(svc: Services, call: Call) -> Response:
    caller = call.caller
    data = json_body(call.request, svc.max_body)
    changes: dict[str, Any] = {}
    for name, limit in (("display_name", 100), ("email", 200)):
        value = field_of(data, name, str, required=False, max_len=limit)
        if value is not None:
            changes[name] = value.strip()
    if "email" in changes and changes["email"] and "@" not in changes["email"]:
        raise ApiError(400, "field email must be an email address", field="email")
    prefs = field_of(data, "preferences", dict, required=False)
    if prefs is not None:
        if len(repr(prefs)) > MAX_PREFERENCES_BYTES:
            raise ApiError(400, "field preferences is too large", field="preferences")
        changes["preferences"] = prefs
    new_pin = field_of(data, "new_pin", str, required=False, max_len=1024)
    ended = 0
    if new_pin is not None:
        if caller.via == "token":  # a leaked token must not be able to take the account
            raise ApiError(403, "API tokens cannot change the PIN: log in")
        current = field_of(data, "current_pin", str, max_len=1024)
        try:
            ended = svc.auth.change_pin(caller.user, current, new_pin, caller.session_hash,
                                        call.ip)
        except PinRejected as exc:
            raise ApiError(400, str(exc), field="new_pin") from exc
    svc.accounts.update_profile(caller.user, call.ip, changes)
    return json_response({"status": "ok", "pin_changed": new_pin is not None,
                          "sessions_ended": ended})


def setup_totp(svc: Services, call: Call) -> Response:
    caller = call.caller
    if "totp" not in svc.two_factor()["allowed_methods"]:
        raise ApiError(409, "TOTP is not an allowed second factor here")
    if caller.user.totp_enabled:  # replacing a working factor: prove it is you
        pin = field_of(json_body(call.request, svc.max_body), "pin", str, max_len=1024)
        svc.auth.check_pin(caller.user, pin, call.ip)
    return json_response(svc.auth.begin_totp(caller.user, call.ip))


def confirm_totp(svc: Services, call: Call) -> Response:
    code = field_of(json_body(call.request, svc.max_body), "code", str, max_len=32)
    codes = svc.auth.confirm_totp(call.caller.user, code, call.ip)
    return json_response({"status": "enrolled", "backup_codes": codes})


def backup_codes(svc: Services, call: Call) -> Response:
    caller = call.caller
    if "backup_codes" not in svc.two_factor()["allowed_methods"]:
        raise ApiError(409, "backup codes are not an allowed second factor here")
    pin = field_of(json_body(call.request, svc.max_body), "pin", str, max_len=1024)
    svc.auth.check_pin(caller.user, pin, call.ip)
    return json_response({"backup_codes": svc.auth.regenerate_backup_codes(caller.user,
                                                                             call.ip)})


def list_tokens(svc: Services, call: Call) -> Response:
    return json_response({"tokens": svc.tokens.list_for(call.caller.user.id),
                          "default_days": svc.cfg.get("auth.token_default_days"),
                          "max_days": svc.cfg.get("auth.token_max_days")})


def create_token(svc: Services, call: Call) -> Response:
    caller = call.caller
    data = json_body(call.request, svc.max_body)
    name = field_of(data, "name", str, max_len=100).strip()
    if not name:
        raise ApiError(400, "field name must not be empty", field="name")
    max_days = svc.cfg.get("auth.token_max_days")
    days = field_of(data, "expires_in_days", int, required=False,
                    default=svc.cfg.get("auth.token_default_days"))
    if not 1 <= days <= max_days:
        raise ApiError(400, f"field expires_in_days must be from 1 to {max_days}",
                       field="expires_in_days")
    # A token outlives the session that made it: prove it is you (as for a new
    # authenticator); a wrong PIN counts toward the lockout.
    pin = field_of(data, "pin", str, max_len=1024)
    svc.auth.check_pin(caller.user, pin, call.ip)
    expires_at = svc.clock.now() + days * 86400
    with svc.db.transaction() as tx:
        token_id, raw = svc.tokens.create(tx, caller.user.id, name, expires_at)
        svc.audit.record("token_created", actor=caller.name, ip=call.ip, tx=tx,
                         target=str(token_id), name=name, days=days)
    return json_response({"id": token_id, "name": name, "token": raw, "expires_at": expires_at})


def revoke_token(svc: Services, call: Call) -> Response:
    caller = call.caller
    svc.accounts.revoke_token(caller.name, call.ip, caller.user, int(call.args[0]),
                              by_admin=False)
    return json_response({"status": "revoked"})


ROUTES = (
    route("GET", r"/api/profile", profile, ENROLLING),
    route("PUT", r"/api/profile", update_profile, ENROLLING, body=obj(
        display_name=text(100), email=text(200), preferences={"type": "object"},
        new_pin=text(1024), current_pin=text(1024))),
    route("POST", r"/api/2fa/setup/totp", setup_totp, CREDENTIALS, body=obj(pin=text(1024))),
    route("POST", r"/api/2fa/setup/totp/verify", confirm_totp, CREDENTIALS,
          body=obj(("code",), code=text(32))),
    route("POST", r"/api/2fa/backup-codes/generate", backup_codes, CREDENTIALS,
          body=obj(("pin",), pin=text(1024))),
    route("GET", r"/api/tokens", list_tokens),
    route("POST", r"/api/tokens", create_token, signed_in(tokens=False),
          body=obj(("name", "pin"), name=text(100), expires_in_days=INTEGER, pin=text(1024))),
    route("DELETE", r"/api/tokens/([0-9]{1,12})", revoke_token, params=("token_id",)),
)
