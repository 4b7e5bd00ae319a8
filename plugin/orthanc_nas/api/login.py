"""POST /api/login, /api/2fa/verify, /api/logout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.service import LoginResult
from ..auth.sessions import PENDING_COOKIE, SESSION_COOKIE
from ..openapi import obj, text
from ..web import ApiError, Request, Response, Router, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..app import App


def register(router: Router, app: App) -> None:
    def session_response(request: Request, result: LoginResult) -> Response:
        secure = app.cookie_secure(request)
        if result.status == "2fa_required":
            response = json_response({"status": "2fa_required"})
            response.set_cookie(PENDING_COOKIE, result.raw_session, secure=secure)
            return response
        principal_restricted = (result.user.must_change_pin
                                or app.backend.must_enroll_totp(result.user))
        response = json_response({
            "status": "ok",
            "user": result.user.public(app.clock.now()),
            "must_change_pin": result.user.must_change_pin,
            "must_enroll_totp": app.backend.must_enroll_totp(result.user),
            "next": "/ui/account" if principal_restricted else "/app/explorer.html",
        })
        response.set_cookie(SESSION_COOKIE, result.raw_session, secure=secure)
        response.set_cookie(PENDING_COOKIE, "", secure=secure, max_age=0)
        return response

    def login(request: Request) -> Response:
        data = json_body(request, app.max_body)
        username = field_of(data, "username", str, max_len=64)
        pin = field_of(data, "pin", str, max_len=1024)
        result = app.auth.login(username, pin, request.ip,
                                request.headers.get("user-agent", ""))
        return session_response(request, result)

    def verify(request: Request) -> Response:
        pending = app.backend.pending(request)
        if pending is None or pending.session_hash is None:
            raise ApiError(403, "no login in progress (it may have expired): log in again")
        code = field_of(json_body(request, app.max_body), "code", str, max_len=32)
        result = app.auth.verify_second_factor(pending.session_hash, pending.user, code,
                                               request.ip, request.headers.get("user-agent", ""))
        return session_response(request, result)

    def logout(request: Request) -> Response:
        principal = app.backend.authenticate(request) or app.backend.pending(request)
        if principal is not None and principal.session_hash is not None:
            app.auth.logout(principal.session_hash, principal.user, request.ip)
        response = json_response({"status": "logged_out"})
        for name in (SESSION_COOKIE, PENDING_COOKIE):
            response.set_cookie(name, "", secure=app.cookie_secure(request), max_age=0)
        return response

    router.add("POST", r"/api/login", login,
               body=obj(("username", "pin"), username=text(64), pin=text(1024)))
    router.add("POST", r"/api/2fa/verify", verify, body=obj(("code",), code=text(32)))
    router.add("POST", r"/api/logout", logout)
