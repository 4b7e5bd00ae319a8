"""POST /api/login, /api/2fa/verify, /api/logout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import PENDING, PUBLIC, SESSION
from ..auth.service import LoginResult
from ..auth.sessions import PENDING_COOKIE, SESSION_COOKIE
from ..openapi import obj, text
from ..routing import Call, route
from ..web import ApiError, Request, Response, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..services import Services


def _session_response(svc: Services, request: Request, result: LoginResult) -> Response:
    secure = svc.site.cookie_secure(request)
    if result.status == "2fa_required":
        response = json_response({"status": "2fa_required"})
        response.set_cookie(PENDING_COOKIE, result.raw_session, secure=secure)
        return response
    must_enroll = svc.backend.must_enroll_totp(result.user)
    response = json_response({
        "status": "ok",
        "user": result.user.public(svc.clock.now()),
        "must_change_pin": result.user.must_change_pin,
        "must_enroll_totp": must_enroll,
        "next": ("/ui/account" if result.user.must_change_pin or must_enroll
                 else "/app/explorer.html"),
    })
    response.set_cookie(SESSION_COOKIE, result.raw_session, secure=secure)
    response.set_cookie(PENDING_COOKIE, "", secure=secure, max_age=0)
    return response


def login(svc: Services, call: Call) -> Response:
    data = json_body(call.request, svc.max_body)
    username = field_of(data, "username", str, max_len=64)
    pin = field_of(data, "pin", str, max_len=1024)
    result = svc.auth.login(username, pin, call.ip, call.request.headers.get("user-agent", ""))
    return _session_response(svc, call.request, result)


def verify(svc: Services, call: Call) -> Response:
    pending = call.pending  # the router checked there is one
    if pending is None or pending.session_hash is None:
        raise ApiError(403, "no login in progress (it may have expired): log in again")
    code = field_of(json_body(call.request, svc.max_body), "code", str, max_len=32)
    result = svc.auth.verify_second_factor(pending.session_hash, pending.user, code, call.ip,
                                           call.request.headers.get("user-agent", ""))
    return _session_response(svc, call.request, result)


def logout(svc: Services, call: Call) -> Response:
    caller = call.principal or call.pending
    if caller is not None and caller.session_hash is not None:
        svc.auth.logout(caller.session_hash, caller.user, call.ip)
    response = json_response({"status": "logged_out"})
    for name in (SESSION_COOKIE, PENDING_COOKIE):
        response.set_cookie(name, "", secure=svc.site.cookie_secure(call.request), max_age=0)
    return response


ROUTES = (
    route("POST", r"/api/login", login, PUBLIC,
          body=obj(("username", "pin"), username=text(64), pin=text(1024))),
    route("POST", r"/api/2fa/verify", verify, PENDING, body=obj(("code",), code=text(32))),
    route("POST", r"/api/logout", logout, SESSION),
)
