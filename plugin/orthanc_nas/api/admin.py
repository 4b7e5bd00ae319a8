"""Admin routes: users, their API tokens and lockouts, and the 2FA configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import config
from ..accounts import UserChange
from ..auth.access import ADMIN_ONLY
from ..openapi import BOOLEAN, obj, text
from ..routing import Call, route
from ..web import ApiError, Response, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..services import Services


def list_users(svc: Services, call: Call) -> Response:
    return json_response({"users": svc.accounts.listing()})


def create_user(svc: Services, call: Call) -> Response:
    data = json_body(call.request, svc.max_body)
    user = svc.accounts.create(
        call.caller.name, call.ip, username=field_of(data, "username", str, max_len=64),
        role=field_of(data, "role", str), pin=field_of(data, "pin", str, max_len=1024),
        display_name=field_of(data, "display_name", str, required=False, default="",
                              max_len=100),
        email=field_of(data, "email", str, required=False, default="", max_len=200))
    return json_response({"user": user.public(svc.clock.now())})


def update_user(svc: Services, call: Call) -> Response:
    data = json_body(call.request, svc.max_body)
    change = UserChange(
        role=field_of(data, "role", str, required=False),
        enabled=field_of(data, "enabled", bool, required=False),
        display_name=field_of(data, "display_name", str, required=False, max_len=100),
        email=field_of(data, "email", str, required=False, max_len=200),
        pin=field_of(data, "pin", str, required=False, max_len=1024),
        unlock=field_of(data, "unlock", bool, required=False, default=False),
        reset_2fa=field_of(data, "reset_2fa", bool, required=False, default=False))
    user = svc.accounts.update(call.caller.name, call.ip, int(call.args[0]), change)
    return json_response({"user": user.public(svc.clock.now())})


def delete_user(svc: Services, call: Call) -> Response:
    svc.accounts.delete(call.caller.user, call.ip, int(call.args[0]))
    return json_response({"status": "deleted"})


def list_user_tokens(svc: Services, call: Call) -> Response:
    user = svc.accounts.get(int(call.args[0]))
    return json_response({"user": {"id": user.id, "username": user.username},
                          "tokens": svc.tokens.list_for(user.id)})


def revoke_user_token(svc: Services, call: Call) -> Response:
    user = svc.accounts.get(int(call.args[0]))
    svc.accounts.revoke_token(call.caller.name, call.ip, user, int(call.args[1]),
                              by_admin=True)
    return json_response({"status": "revoked"})


def get_2fa_config(svc: Services, call: Call) -> Response:
    meta = svc.settings.meta("two_factor")
    return json_response({"config": svc.two_factor(),
                          "source": "runtime" if meta else "orthanc.json",
                          "runtime_override": svc.settings.get("two_factor"),
                          "updated": meta})


def set_2fa_config(svc: Services, call: Call) -> Response:
    admin = call.caller
    data = json_body(call.request, svc.max_body)
    before = svc.two_factor()
    schema = config.SCHEMA["two_factor"]
    assert not isinstance(schema, config.Field)
    try:
        merged = config.validate_section(schema, {**before, **data},
                                         f"{config.SECTION}.two_factor")
    except config.ConfigError as exc:
        raise ApiError(400, str(exc), field=exc.key.rsplit(".", 1)[-1]) from exc
    override = {**(svc.settings.get("two_factor") or {}), **data}
    with svc.db.transaction() as tx:
        svc.settings.put(tx, "two_factor", override, admin.name)
        changed = {k: merged[k] for k in merged if merged[k] != before[k]}
        svc.audit.record("two_factor_config_changed", actor=admin.name, ip=call.ip, tx=tx,
                         changes=changed)
        if before["enabled"] and not merged["enabled"]:
            svc.audit.record("security_alert", actor=admin.name, ip=call.ip, tx=tx,
                             alert="two-factor authentication disabled system-wide")
    return json_response({"config": svc.two_factor(), "source": "runtime"})


USER = r"/api/admin/users/([0-9]{1,12})"
ROLE = {"type": "string", "enum": list(config.ROLES)}
ROUTES = (
    route("GET", r"/api/admin/users", list_users, ADMIN_ONLY),
    route("POST", r"/api/admin/users", create_user, ADMIN_ONLY, body=obj(
        ("username", "role", "pin"), username=text(64), role=ROLE, pin=text(1024),
        display_name=text(100), email=text(200))),
    route("PUT", USER, update_user, ADMIN_ONLY, params=("user_id",), body=obj(
        role=ROLE, enabled=BOOLEAN, display_name=text(100), email=text(200), pin=text(1024),
        unlock=BOOLEAN, reset_2fa=BOOLEAN)),
    route("DELETE", USER, delete_user, ADMIN_ONLY, params=("user_id",)),
    route("GET", f"{USER}/tokens", list_user_tokens, ADMIN_ONLY, params=("user_id",)),
    route("DELETE", f"{USER}/tokens/([0-9]{{1,12}})", revoke_user_token, ADMIN_ONLY,
          params=("user_id", "token_id")),
    route("GET", r"/api/2fa/config", get_2fa_config, ADMIN_ONLY),
    route("POST", r"/api/2fa/config", set_2fa_config, ADMIN_ONLY),
)
