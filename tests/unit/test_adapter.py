"""adapter.py, the one module that imports ``orthanc``, on the SDK fake (tests/fakes.py): what
it registers at start, how each callback reaches App, and that its failures fail closed.
tests/integration/test_sdk_fake.py checks the fake against the real module."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fakes import (
    ChangeType,
    DicomInstance,
    FakeOrthanc,
    FakeSdk,
    HttpMethod,
    ResourceType,
    RestOutput,
    fake_orthanc_module,
    sdk_names,
)
from orthanc_nas.orthanc_api import OrthancError

ADMIN_PIN = "Initial-Bootstrap-PIN-2024"
PLUGIN = Path(__file__).resolve().parents[2] / "plugin" / "orthanc_nas"


@pytest.fixture
def sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSdk:
    monkeypatch.setenv("ORTHANC_NAS_ADMIN_PIN", ADMIN_PIN)
    monkeypatch.delenv("ORTHANC_NAS_TEST_CLOCK_FILE", raising=False)
    return fake_orthanc_module(
        {"HttpPort": 8042, "Plugins": [], "StorageDirectory": str(tmp_path / "storage"),
         "OrthancNAS": {"data_dir": str(tmp_path), "auth": {"bcrypt_cost": 4}}},
        FakeOrthanc({"/system": {"Version": "1.10.1"}}))


@pytest.fixture
def adapter(sdk: FakeSdk, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh ``orthanc_nas.adapter`` whose ``import orthanc`` found the fake."""
    monkeypatch.setitem(sys.modules, "orthanc", sdk)
    monkeypatch.delitem(sys.modules, "orthanc_nas.adapter", raising=False)
    module = importlib.import_module("orthanc_nas.adapter")
    yield module
    sys.modules.pop("orthanc_nas.adapter", None)


def started(adapter: ModuleType) -> Any:
    adapter.start()
    return adapter._app


def test_start_registers_every_callback(adapter: ModuleType, sdk: FakeSdk) -> None:
    started(adapter)
    assert sdk.filter is not None  # no C gate configured: the Python filter
    assert set(sdk.rest_callbacks) == set(adapter.ROUTE_PATTERNS)
    assert sdk.on_stored is not None and sdk.on_change is not None
    assert sdk.explorer_js and not any("refusing" in m for _, m in sdk.logs)
    assert any("C gate is not configured" in m for level, m in sdk.logs if level == "warning")


def test_a_refused_configuration_stops_orthanc(adapter: ModuleType, sdk: FakeSdk) -> None:
    sdk.configuration["OrthancNAS"]["auth"]["bcrypt_cost"] = "many"
    with pytest.raises(Exception):  # noqa: B017 (whatever config raises, Orthanc must stop)
        adapter.start()
    assert any(m.startswith("OrthancNAS: refusing to start") for _, m in sdk.logs)
    assert sdk.filter is None and not sdk.rest_callbacks


def test_methods_are_the_sdks_codes(adapter: ModuleType) -> None:
    assert {m.value: m.name for m in HttpMethod} == adapter._METHODS


def test_the_filter_decides_and_fails_closed(adapter: ModuleType, sdk: FakeSdk,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    app = started(adapter)
    assert sdk.filter is not None
    request: dict[str, Any] = {"method": HttpMethod.GET, "ip": "10.0.0.1",
                               "headers": {"host": "localhost"}, "get": {}}
    assert sdk.filter("/api/health", **request) is True  # public
    assert sdk.filter("/studies", **request) is False  # nobody logged in
    assert sdk.filter("/studies", **{**request, "method": 9}) is False  # unknown method

    def broken(_request: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(app, "decide", broken)
    assert sdk.filter("/api/health", **request) is False
    assert ("error", "OrthancNAS: authorization filter failed, denying /api/health: "
                     "RuntimeError") in sdk.logs


def test_a_rest_callback_answers_json_with_the_filters_client_ip(
        adapter: ModuleType, sdk: FakeSdk, monkeypatch: pytest.MonkeyPatch) -> None:
    app = started(adapter)
    assert sdk.filter is not None
    seen: list[str] = []
    handle = app.handle
    monkeypatch.setattr(app, "handle", lambda r: seen.append(r.ip) or handle(r))
    headers = {"host": "localhost"}
    sdk.filter("/api/health", method=HttpMethod.GET, ip="10.9.8.7", headers=headers, get={})
    output = RestOutput()
    sdk.rest_callbacks["/api/(.*)"](output, "/api/health", method="GET", headers=headers)
    assert output.status in (200, 503) and "status" in json.loads(output.body or b"")
    assert seen == ["10.9.8.7"]  # plugin 4.0 gives REST callbacks no IP: the filter's


def test_a_plugin_40_output_gets_its_three_argument_status(adapter: ModuleType,
                                                           sdk: FakeSdk) -> None:
    started(adapter)
    output = RestOutput(plugin_40=True)
    sdk.rest_callbacks["/api/(.*)"](output, "/api/nothing-here", method="GET",
                                    headers={"host": "localhost"})
    assert output.status == 404 and json.loads(output.body or b"")["error"]


def test_stored_instances_reach_the_app(adapter: ModuleType, sdk: FakeSdk,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    app = started(adapter)
    calls: list[tuple[str, bytes, str, dict[str, Any]]] = []
    monkeypatch.setattr(app, "on_stored",
                        lambda i, data, aet, tags: calls.append((i, data, aet, tags())))
    assert sdk.on_stored is not None
    sdk.on_stored(DicomInstance(b"DICM", "MODALITY1", {"PatientID": "P"}), "inst-1")
    assert calls == [("inst-1", b"DICM", "MODALITY1", {"PatientID": "P"})]

    def broken(*_args: Any) -> None:
        raise OSError("spool full")

    monkeypatch.setattr(app, "on_stored", broken)
    sdk.on_stored(DicomInstance(b"DICM"), "inst-2")  # logged, never raised into Orthanc
    assert any("could not queue instance inst-2" in m for level, m in sdk.logs
               if level == "error")


def test_changes_reach_the_app(adapter: ModuleType, sdk: FakeSdk,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    app = started(adapter)
    seen: list[tuple[str, str]] = []
    for name in ("on_instance_deleted", "on_study_changed", "on_study_deleted", "stopping"):
        monkeypatch.setattr(app, name, lambda *a, n=name: seen.append((n, *a)))
    monkeypatch.setattr(app, "started", lambda url, token: seen.append(("started", url, token)))
    assert sdk.on_change is not None
    sdk.on_change(ChangeType.ORTHANC_STARTED, ResourceType.NONE, "")
    sdk.on_change(ChangeType.DELETED, ResourceType.INSTANCE, "i")
    sdk.on_change(ChangeType.STABLE_STUDY, ResourceType.STUDY, "s")
    sdk.on_change(ChangeType.DELETED, ResourceType.STUDY, "s")
    sdk.on_change(ChangeType.NEW_SERIES, ResourceType.SERIES, "x")  # not ours
    sdk.on_change(ChangeType.ORTHANC_STOPPED, ResourceType.NONE, "")
    assert seen == [("started", "http://127.0.0.1:8042", sdk.token),
                    ("on_instance_deleted", "i"), ("on_study_changed", "s"),
                    ("on_study_deleted", "s"), ("stopping",)]


def test_orthancs_rest_api_through_the_sdk(adapter: ModuleType, sdk: FakeSdk) -> None:
    app = started(adapter)
    assert app.orthanc.get("/system") == {"Version": "1.10.1"}
    with pytest.raises(OrthancError):
        app.orthanc.get("/studies/unknown")
    sdk.rest.posts["/tools/find"] = [{"ID": "s"}]
    assert app.orthanc.post("/tools/find", b"{}") == [{"ID": "s"}]
    app.orthanc.delete("/studies/s")
    assert ("DELETE", "/studies/s") in sdk.rest.calls

def test_the_adapter_calls_only_names_the_fake_defines() -> None:
    """The other half: what adapter.py and answer.py use of ``orthanc`` is in the fake."""
    names = sdk_names()
    known = set(names["functions"]) | set(names["enums"]) | set(names["classes"])
    source = (PLUGIN / "adapter.py").read_text()
    used = set(re.findall(r"\borthanc\.([A-Z]\w*)", source))
    # Names of newer plugins, used only behind a feature test, are not in 4.0's module.
    detected = set(re.findall(r"hasattr\(orthanc, \"(\w+)\"\)", source))
    assert detected, "the adapter detects newer plugins by feature"
    assert used - detected <= known, f"the fake lacks {sorted(used - detected - known)}"
    answer = (PLUGIN / "answer.py").read_text()
    output_calls = set(re.findall(r"\boutput\.([A-Z]\w*)", answer))
    assert output_calls <= set(names["classes"]["RestOutput"])
