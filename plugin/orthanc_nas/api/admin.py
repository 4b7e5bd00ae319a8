"""Admin routes: users and the 2FA configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import config
from ..auth.users import UserError, valid_username
from ..openapi import BOOLEAN, obj, text
from ..web import ApiError, Request, Response, Router, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..app import App


def register(router: Router, app: App) -> None:
    def list_users(request: Request) -> Response:
        app.require_admin(request)
        now = app.clock.now()
        return json_response({"users": [u.public(now) for u in app.users.all()]})

    def create_user(request: Request) -> Response:
        admin = app.require_admin(request)
        data = json_body(request, app.max_body)
        username = field_of(data, "username", str, max_len=64)
        if not valid_username(username):
            raise ApiError(400, "field username: letters, digits and . _ @ - (1 to 64)",
                           field="username")
        role = field_of(data, "role", str)
        if role not in config.ROLES:
            raise ApiError(400, f"field role must be one of {config.ROLES}", field="role")
        pin = field_of(data, "pin", str, max_len=1024)
        app.auth.validate_new_pin(pin, username)
        display = field_of(data, "display_name", str, required=False, default="", max_len=100)
        email = field_of(data, "email", str, required=False, default="", max_len=200)
        pin_hash = app.auth.hasher.hash(pin)
        with app.db.transaction() as tx:
            try:
                user_id = app.users.create(tx, username=username, role=role, pin_hash=pin_hash,
                                           now=app.clock.now(), display_name=display,
                                           email=email, must_change_pin=True)
            except UserError as exc:
                raise ApiError(409, str(exc), field="username") from exc
            app.audit.record("user_created", actor=admin.name, ip=request.ip, tx=tx,
                             target=username, role=role)
        user = app.users.get(user_id)
        assert user is not None
        return json_response({"user": user.public(app.clock.now())})

    def update_user(request: Request, user_id: str) -> Response:
        admin = app.require_admin(request)
        data = json_body(request, app.max_body)
        target = app.users.get(int(user_id))
        if target is None:
            raise ApiError(404, "no such user")
        changes: dict[str, Any] = {}
        role = field_of(data, "role", str, required=False)
        if role is not None:
            if role not in config.ROLES:
                raise ApiError(400, f"field role must be one of {config.ROLES}", field="role")
            changes["role"] = role
        enabled = field_of(data, "enabled", bool, required=False)
        if enabled is not None:
            changes["enabled"] = int(enabled)
        for name, limit in (("display_name", 100), ("email", 200)):
            value = field_of(data, name, str, required=False, max_len=limit)
            if value is not None:
                changes[name] = value
        pin = field_of(data, "pin", str, required=False, max_len=1024)
        if pin is not None:
            app.auth.validate_new_pin(pin, target.username)
            changes["pin_hash"] = app.auth.hasher.hash(pin)
            changes["must_change_pin"] = 1
        unlock = field_of(data, "unlock", bool, required=False, default=False)
        reset_2fa = field_of(data, "reset_2fa", bool, required=False, default=False)
        if not changes and not unlock and not reset_2fa:
            raise ApiError(400, "nothing to change")
        with app.db.transaction() as tx:
            if changes:
                app.users.update(tx, target.id, **changes)
            if unlock:
                app.users.update(tx, target.id, failed_count=0, locked_until=0)
            if reset_2fa:
                app.auth.reset_two_factor(tx, target.id)
            if app.users.enabled_admins(tx) == 0:
                raise ApiError(409, "at least one enabled admin must remain")
            ended = 0
            if {"role", "enabled", "pin_hash"} & set(changes) or reset_2fa:
                ended = app.sessions.end_all(tx, target.id)
            disabled = changes.get("enabled") == 0
            if disabled or changes.get("role") == "viewer":
                app.shares.revoke_all_of(tx, target.id, admin.name, request.ip,
                                         "account disabled" if disabled else "role viewer")
            fields = sorted(set(changes) - {"pin_hash"} | ({"pin"} if pin else set()))
            if fields:
                app.audit.record("user_updated", actor=admin.name, ip=request.ip, tx=tx,
                                 target=target.username, fields=fields, sessions_ended=ended,
                                 **{k: v for k, v in changes.items() if k in ("role", "enabled")})
            if unlock:
                app.audit.record("user_unlocked", actor=admin.name, ip=request.ip, tx=tx,
                                 target=target.username)
            if reset_2fa:
                app.audit.record("two_factor_reset", actor=admin.name, ip=request.ip, tx=tx,
                                 target=target.username)
        user = app.users.get(target.id)
        assert user is not None
        return json_response({"user": user.public(app.clock.now())})

    def delete_user(request: Request, user_id: str) -> Response:
        admin = app.require_admin(request)
        target = app.users.get(int(user_id))
        if target is None:
            raise ApiError(404, "no such user")
        if target.id == admin.user.id:
            raise ApiError(409, "you cannot delete your own account")
        with app.db.transaction() as tx:
            app.shares.revoke_all_of(tx, target.id, admin.name, request.ip, "account deleted")
            tx.execute("DELETE FROM users WHERE id = ?", (target.id,))
            if app.users.enabled_admins(tx) == 0:
                raise ApiError(409, "at least one enabled admin must remain")
            app.audit.record("user_deleted", actor=admin.name, ip=request.ip, tx=tx,
                             target=target.username)
        return json_response({"status": "deleted"})

    def get_2fa_config(request: Request) -> Response:
        app.require_admin(request)
        meta = app.settings.meta("two_factor")
        return json_response({"config": app.two_factor(),
                              "source": "runtime" if meta else "orthanc.json",
                              "runtime_override": app.settings.get("two_factor"),
                              "updated": meta})

    def set_2fa_config(request: Request) -> Response:
        admin = app.require_admin(request)
        data = json_body(request, app.max_body)
        before = app.two_factor()
        schema = config.SCHEMA["two_factor"]
        assert not isinstance(schema, config.Field)
        try:
            merged = config.validate_section(schema, {**before, **data},
                                             f"{config.SECTION}.two_factor")
        except config.ConfigError as exc:
            raise ApiError(400, str(exc), field=exc.key.rsplit(".", 1)[-1]) from exc
        override = {**(app.settings.get("two_factor") or {}), **data}
        with app.db.transaction() as tx:
            app.settings.put(tx, "two_factor", override, admin.name)
            changed = {k: merged[k] for k in merged if merged[k] != before[k]}
            app.audit.record("two_factor_config_changed", actor=admin.name, ip=request.ip,
                             tx=tx, changes=changed)
            if before["enabled"] and not merged["enabled"]:
                app.audit.record("security_alert", actor=admin.name, ip=request.ip, tx=tx,
                                 alert="two-factor authentication disabled system-wide")
        return json_response({"config": app.two_factor(), "source": "runtime"})

    router.add("GET", r"/api/admin/users", list_users)
    role = {"enum": list(config.ROLES)}
    router.add("POST", r"/api/admin/users", create_user, body=obj(
        ("username", "role", "pin"), username=text(64), role=role, pin=text(1024),
        display_name=text(100), email=text(200)))
    router.add("PUT", r"/api/admin/users/([0-9]{1,12})", update_user, body=obj(
        role=role, enabled=BOOLEAN, display_name=text(100), email=text(200), pin=text(1024),
        unlock=BOOLEAN, reset_2fa=BOOLEAN))
    router.add("DELETE", r"/api/admin/users/([0-9]{1,12})", delete_user)
    router.add("GET", r"/api/2fa/config", get_2fa_config)
    router.add("POST", r"/api/2fa/config", set_2fa_config)
