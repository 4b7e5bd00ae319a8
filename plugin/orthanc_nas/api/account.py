"""The caller's own account: profile, PIN, TOTP enrollment, backup codes, API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..openapi import INTEGER, obj, text
from ..web import ApiError, Request, Response, Router, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..app import App
    from ..auth.backend import Principal

MAX_PREFERENCES_BYTES = 4096


def _not_by_token(principal: Principal, what: str) -> None:
    """Credentials are managed in a login session only: a leaked API token must not be
    able to enroll an attacker's authenticator, change the PIN or mint more tokens."""
    if principal.via == "token":
        raise ApiError(403, f"API tokens cannot {what}: log in")


def register(router: Router, app: App) -> None:
    def profile(request: Request) -> Response:
        principal = app.principal(request, allow_restricted=True)
        user = principal.user
        now = app.clock.now()
        session = None
        if principal.session_hash is not None:
            for s in app.sessions.active_for(user.id):
                if s.id_hash == principal.session_hash:
                    session = {"created_at": s.created_at, "last_seen": s.last_seen,
                               "idle_expires_at": s.last_seen + app.sessions.idle,
                               "expires_at": s.expires_at, "ip": s.ip,
                               "user_agent": s.user_agent}
        tf = app.two_factor()
        return json_response({
            "user": user.public(now),
            "via": principal.via,
            "session": session,
            "must_enroll_totp": principal.must_enroll_totp,
            "two_factor": {"enabled": tf["enabled"], "totp_enabled": user.totp_enabled,
                           "allowed_methods": tf["allowed_methods"],
                           "backup_codes_left": app.auth.backup_codes_left(user.id)},
        })

    def update_profile(request: Request) -> Response:
        principal = app.principal(request, allow_restricted=True)
        user = principal.user
        data = json_body(request, app.max_body)
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
            _not_by_token(principal, "change the PIN")
            current = field_of(data, "current_pin", str, max_len=1024)
            ended = app.auth.change_pin(user, current, new_pin, principal.session_hash,
                                        request.ip)
        if changes:
            with app.db.transaction() as tx:
                app.users.update(tx, user.id, **changes)
                app.audit.record("profile_updated", actor=user.username, ip=request.ip, tx=tx,
                                 fields=sorted(changes))
        return json_response({"status": "ok", "pin_changed": new_pin is not None,
                              "sessions_ended": ended})

    def setup_totp(request: Request) -> Response:
        principal = app.principal(request, allow_restricted=True)
        _not_by_token(principal, "enroll a second factor")
        if "totp" not in app.two_factor()["allowed_methods"]:
            raise ApiError(409, "TOTP is not an allowed second factor here")
        if principal.user.totp_enabled:  # replacing a working factor: prove it is you
            pin = field_of(json_body(request, app.max_body), "pin", str, max_len=1024)
            app.auth.check_pin(principal.user, pin, request.ip)
        return json_response(app.auth.begin_totp(principal.user, request.ip))

    def confirm_totp(request: Request) -> Response:
        principal = app.principal(request, allow_restricted=True)
        _not_by_token(principal, "enroll a second factor")
        code = field_of(json_body(request, app.max_body), "code", str, max_len=32)
        codes = app.auth.confirm_totp(principal.user, code, request.ip)
        return json_response({"status": "enrolled", "backup_codes": codes})

    def backup_codes(request: Request) -> Response:
        principal = app.principal(request, allow_restricted=True)
        _not_by_token(principal, "generate backup codes")
        if "backup_codes" not in app.two_factor()["allowed_methods"]:
            raise ApiError(409, "backup codes are not an allowed second factor here")
        pin = field_of(json_body(request, app.max_body), "pin", str, max_len=1024)
        app.auth.check_pin(principal.user, pin, request.ip)
        return json_response({"backup_codes": app.auth.regenerate_backup_codes(
            principal.user, request.ip)})

    def list_tokens(request: Request) -> Response:
        principal = app.principal(request)
        return json_response({"tokens": app.tokens.list_for(principal.user.id)})

    def create_token(request: Request) -> Response:
        principal = app.principal(request)
        _not_by_token(principal, "create tokens")
        data = json_body(request, app.max_body)
        name = field_of(data, "name", str, max_len=100).strip()
        if not name:
            raise ApiError(400, "field name must not be empty", field="name")
        max_days = app.cfg.get("auth.token_max_days")
        days = field_of(data, "expires_in_days", int, required=False, default=None)
        if days is not None and not 1 <= days <= max_days:
            raise ApiError(400, f"field expires_in_days must be from 1 to {max_days}",
                           field="expires_in_days")
        expires_at = app.clock.now() + days * 86400 if days else None
        with app.db.transaction() as tx:
            token_id, raw = app.tokens.create(tx, principal.user.id, name, expires_at)
            app.audit.record("token_created", actor=principal.name, ip=request.ip, tx=tx,
                             target=str(token_id), name=name)
        return json_response({"id": token_id, "name": name, "token": raw,
                              "expires_at": expires_at})

    def revoke_token(request: Request, token_id: str) -> Response:
        principal = app.principal(request)
        with app.db.transaction() as tx:
            if not app.tokens.revoke(tx, principal.user.id, int(token_id)):
                raise ApiError(404, "no such token")
            app.audit.record("token_revoked", actor=principal.name, ip=request.ip, tx=tx,
                             target=token_id)
        return json_response({"status": "revoked"})

    router.add("GET", r"/api/profile", profile)
    router.add("PUT", r"/api/profile", update_profile, body=obj(
        display_name=text(100), email=text(200), preferences={"type": "object"},
        new_pin=text(1024), current_pin=text(1024)))
    router.add("POST", r"/api/2fa/setup/totp", setup_totp, body=obj(pin=text(1024)))
    router.add("POST", r"/api/2fa/setup/totp/verify", confirm_totp,
               body=obj(("code",), code=text(32)))
    router.add("POST", r"/api/2fa/backup-codes/generate", backup_codes,
               body=obj(("pin",), pin=text(1024)))
    router.add("GET", r"/api/tokens", list_tokens)
    router.add("POST", r"/api/tokens", create_token,
               body=obj(("name",), name=text(100), expires_in_days=INTEGER))
    router.add("DELETE", r"/api/tokens/([0-9]{1,12})", revoke_token)
