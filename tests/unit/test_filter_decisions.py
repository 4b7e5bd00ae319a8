"""The filter's decisions: what the C gate may remember, bugs answered 500, anonymous bodies, and
the uploader the filter saw.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orthanc_nas import app as app_module
from orthanc_nas.auth.access import PUBLIC
from orthanc_nas.orthanc_api import orthanc_study_id
from orthanc_nas.routing import Call, Router, route
from orthanc_nas.web import Request, Response

from .app_env import (
    ADMIN_PIN,
    Client,
    Env,
    admin_ready,
    audit_rows,
    body_of,
    build,
    make_user,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


# ---- what the C gate may remember --------------------------------------------------------

def test_only_plain_reads_of_orthanc_routes_may_be_remembered(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    cleared: list[int] = []
    env.app.db.on_invalidate.append(lambda: cleared.append(1))

    def decide(method: str, path: str, **kwargs: Any) -> tuple[bool, float]:
        return env.app.decide(client.request(method, path, **kwargs))[:2]

    allowed, remember, any_arguments = env.app.decide(client.request("GET", "/studies"))
    assert allowed and 0 < remember <= app_module.REMEMBER_MAX and any_arguments
    # Arguments change neither the policy's answer nor what the access audit records...
    with_args = env.app.decide(client.request("GET", "/studies", query={"expand": ""}))
    assert with_args.remember > 0 and with_args.any_arguments
    # ...except on WADO-URI, where they name the study read: each one enters Python.
    assert decide("GET", "/wado", query={"studyUID": "1.2.3"}) == (True, 0.0)
    assert not env.app.decide(client.request("GET", "/wado")).any_arguments
    assert decide("GET", "/api/profile") == (True, 0.0)  # the plugin's own route
    assert decide("GET", "/ui/images")[1] == 0.0
    assert decide("POST", "/tools/find", data={}) == (True, 0.0)  # not a read
    assert decide("DELETE", "/studies/x") == (False, 0.0)  # denials are never remembered
    anonymous = Client(env.app)
    assert env.app.decide(anonymous.request("GET", "/studies"))[:2] == (False, 0.0)
    assert cleared == []  # reading changes nothing
    assert admin_client.post("/api/logout").status == 200
    assert cleared  # any write that may change who may do what clears the gate


def test_a_restricted_caller_is_never_remembered(env: Env) -> None:
    client = Client(env.app)
    assert client.login("admin", ADMIN_PIN).status == 200  # must still change the PIN
    allowed, remember, _ = env.app.decide(client.request("GET", "/api/profile"))
    assert allowed and remember == 0.0
    assert env.app.decide(client.request("GET", "/studies"))[:2] == (False, 0.0)


def test_a_bug_answers_500_and_logs_no_share_token(env: Env) -> None:
    def broken(svc: object, call: Call) -> Response:
        raise KeyError(call.args[0])

    env.app.router = Router((route("GET", r"/s/([^/]+)/broken", broken, PUBLIC),), 1024)
    response = env.app.handle(Request("GET", "/s/Secret-Share-Token/broken", {}, {}, b"", "::1"))
    assert response.status == 500 and body_of(response) == {"error": "internal error"}
    assert env.log.lines[-1] == "OrthancNAS: GET /s/<token>/broken failed: KeyError"


@pytest.mark.parametrize("length", [None, "chunked", "1048577", "1e9", "\u00b2"])
def test_anonymous_bodies_must_declare_a_small_size(env: Env, length: str | None) -> None:
    client = Client(env.app)
    headers = {} if length is None else {"content-length": length}
    request = client.request("POST", "/api/login", {"username": "admin", "pin": ADMIN_PIN})
    request.headers.pop("content-length")
    request.headers.update(headers)
    assert env.app.decide(request)[0] is False  # Orthanc would read it all into memory
    assert client.allowed("POST", "/api/login", data={"username": "admin", "pin": ADMIN_PIN})


# ---- uploads: who sent what Orthanc stored ----------------------------------------------------


def test_the_uploader_is_the_user_the_filter_allowed_on_this_thread(env: Env) -> None:
    """Orthanc stores ``POST /instances`` itself (multipart parts reach no handler with a
    cookie); the filter's decision on the same thread names the uploader."""
    admin_client, _ = admin_ready(env)
    bob_client, bob = make_user(env, admin_client, "bob", "user", ip="10.0.0.7")
    vic_client, _ = make_user(env, admin_client, "vic", "viewer")
    tags = {"PatientID": "P-1", "StudyInstanceUID": "1.2.3"}
    study = orthanc_study_id("P-1", "1.2.3")

    assert bob_client.allowed("POST", "/instances/")  # Orthanc Explorer's form
    env.app.on_stored("inst-1", b"", "", lambda: tags)
    env.app.on_stored("inst-2", b"", "", lambda: tags)  # a second file of the same request
    assert env.app.catalog.own_studies(bob.user_id) == {study}
    uploads = [r for r in audit_rows(env.app) if r["event"] == "instance_uploaded"]
    assert [(r["actor"], r["ip"], r["target"]) for r in uploads] == [
        ("bob", "10.0.0.7", study)] * 2
    assert json.loads(uploads[0]["details"]) == {"instance": "inst-1", "ownership": "owner",
                                                       "via": "upload"}

    for other in (lambda: bob_client.allowed("GET", "/patients"),  # the next request
                  lambda: vic_client.allowed("POST", "/instances"),  # refused
                  lambda: Client(env.app).allowed("POST", "/instances")):  # anonymous
        other()
        env.app.on_stored("inst-x", b"", "", lambda: tags)
        assert env.app.db.one("SELECT 1 FROM instance_owners WHERE instance_id = 'inst-x'") \
            is None
    assert len([r for r in audit_rows(env.app) if r["event"] == "instance_uploaded"]) == 2
