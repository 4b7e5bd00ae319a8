"""The OpenAPI document is made from the route table: every route appears, with the access the
filter enforces, and a new route shows up without anyone describing it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from orthanc_nas import config, openapi
from orthanc_nas.auth.access import ADMIN_ONLY, Access
from orthanc_nas.auth.access import POLICY as BY_POLICY
from orthanc_nas.auth.policy import Policy
from orthanc_nas.routing import Call, Route, route
from orthanc_nas.web import Request, Response

from .app_env import Env, build

POLICY = Policy(config.default_policy())


def ok(svc: object, call: Call) -> Response:
    return Response()


def sample_paths(doc: dict[str, Any], method: str) -> list[str]:
    """Each documented path of ``method`` with its parameters filled from their examples."""
    out = []
    for template, operations in doc["paths"].items():
        if method.lower() in operations:
            path = template
            for param in operations[method.lower()].get("parameters", []):
                path = path.replace("{" + param["name"] + "}",
                                    openapi.example(param["schema"]["pattern"][4:-2]), 1)
            out.append(path)
    return out


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return build(tmp_path)


def served(env: Env) -> dict[str, Any]:
    request = Request("GET", "/api/openapi.json", {"host": "h"})
    assert env.app.decide(request)[0]  # public: it holds no data
    response = env.app.handle(request)
    assert response.status == 200
    doc: dict[str, Any] = json.loads(response.body)
    return doc


def test_every_route_of_the_app_is_an_operation(env: Env) -> None:
    doc = served(env)
    assert doc["openapi"] == "3.1.0"
    routes = env.app.router.routes
    assert len(routes) > 60
    for served_route in routes:
        paths = sample_paths(doc, served_route.method)
        assert any(served_route.pattern.fullmatch(p) for p in paths), (
            served_route.method, served_route.pattern)
    # and nothing else: every documented path is served by a route of its method
    for template, operations in doc["paths"].items():
        for method in operations:
            for path in sample_paths({"paths": {template: operations}}, method):
                assert any(r.method == method.upper() and r.pattern.fullmatch(path)
                           for r in routes), (method, template)


def test_access_is_the_filters(env: Env) -> None:
    paths = served(env)["paths"]
    login = paths["/api/login"]["post"]
    assert login["security"] == [] and login["x-access"] == "public"
    assert login["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "username", "pin"]
    users = paths["/api/admin/users"]["post"]
    assert users["x-roles"] == ["admin"] and {"session": []} in users["security"]
    assert paths["/api/images/{resource_id}/share"]["post"]["x-roles"] == ["admin", "user"]
    assert paths["/tools/find"]["post"]["x-roles"] == ["admin", "user", "viewer"]
    assert paths["/api/2fa/verify"]["post"]["x-pending-login"] is True
    assert paths["/api/profile"]["put"]["x-restricted-session"] is True
    assert paths["/api/tokens"]["post"]["x-restricted-session"] is False
    assert "text/html" in paths["/ui/login"]["get"]["responses"]["200"]["content"]
    assert "image/png" in paths["/s/{token}/preview/{instance_id}"]["get"]["responses"][
        "200"]["content"]


def test_choices_of_words_become_paths_and_groups_parameters() -> None:
    routes = (route("POST", r"/modalities/([^/]+)/(store|move)", ok, BY_POLICY),
              route("POST", r"/(?:patients|studies)/[^/]+/(?:anonymize|modify)", ok, BY_POLICY),
              route("GET", r"/x/([0-9a-f]{8}(?:-[0-9a-f]{8}){4})/file\.dcm", ok, BY_POLICY))
    doc = openapi.document(routes, POLICY, config.ROLES, "t")
    assert sorted(doc["paths"]) == [
        "/modalities/{p1}/move", "/modalities/{p1}/store",
        "/patients/{id}/anonymize", "/patients/{id}/modify",
        "/studies/{id}/anonymize", "/studies/{id}/modify",
        "/x/{p1}/file.dcm"]
    param = doc["paths"]["/x/{p1}/file.dcm"]["get"]["parameters"][0]
    assert param["schema"]["pattern"] == "^(?:[0-9a-f]{8}(?:-[0-9a-f]{8}){4})$"
    assert doc["paths"]["/patients/{id}/modify"]["post"]["x-roles"] == ["admin"]


def test_a_new_route_shows_up_with_its_declared_access_and_names() -> None:
    routes = (route("DELETE", r"/api/things/([0-9]{1,6})", ok, ADMIN_ONLY,
                    body={"type": "object"}, params=("thing_id",)),)
    doc = openapi.document(routes, POLICY, config.ROLES, "t")
    operation = doc["paths"]["/api/things/{thing_id}"]["delete"]
    assert operation["x-roles"] == ["admin"]  # as declared next to its path
    assert "requestBody" not in operation  # DELETE takes no body


@pytest.mark.parametrize("pattern", [r"/a/(?P<x>[0-9]+)", r"^/a", r"/a/(b"])
def test_patterns_it_cannot_read_are_refused(pattern: str) -> None:
    routes: tuple[Route, ...] = (
        route("GET", pattern if pattern != r"/a/(b" else "/a", ok, Access(BY_POLICY.kind)),)
    if pattern == r"/a/(b":
        with pytest.raises(openapi.PatternError):
            openapi._pieces(pattern)
        return
    with pytest.raises(openapi.PatternError):
        openapi.document(routes, POLICY, config.ROLES, "t")


def test_schemathesis_reads_it(env: Env) -> None:
    schema = schemathesis.openapi.from_dict(served(env))
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in served(env)["paths"].values())
    for operation in operations:  # every parameter pattern is a regex its generator takes
        for param in operation.path_parameters:
            re.compile(param.definition["schema"]["pattern"])
