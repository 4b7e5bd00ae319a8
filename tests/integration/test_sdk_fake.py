"""The SDK fake (tests/fakes.py) against the real ``orthanc`` module inside a real Orthanc:
every function, enum member (with its value), class and method the fake defines exists there,
so the adapter's unit tests cannot pass on a name Orthanc does not have (and
tests/unit/test_adapter.py checks the adapter uses no name the fake lacks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes import sdk_names
from harness import REPO, OrthancServer


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("sdk")
    dump = workdir / "sdk.json"
    server = OrthancServer(workdir, {
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancPython.so"],
        "PythonScript": str(REPO / "tests" / "sdk_dump.py")},
        env={"ORTHANC_NAS_SDK_DUMP": str(dump)}).start()  # ready: the dump was written
    try:
        yield json.loads(Path(dump).read_text())
    finally:
        server.stop()


def test_every_function_of_the_fake_is_in_the_real_module(real: dict[str, Any]) -> None:
    fake = sdk_names()["functions"]
    missing = [name for name in fake if real.get(name, {}).get("kind") != "function"]
    assert not missing, f"the fake defines functions the SDK lacks: {missing}"


def test_enums_have_the_fakes_members_with_the_same_values(real: dict[str, Any]) -> None:
    for name, members in sdk_names()["enums"].items():
        assert name in real, f"no enum {name} in the SDK"
        values = real[name]["values"]
        wrong = {m: (v, values.get(m)) for m, v in members.items() if values.get(m) != v}
        assert not wrong, f"{name}: the fake's values differ from the SDK's: {wrong}"


def test_classes_have_the_fakes_methods(real: dict[str, Any]) -> None:
    for name, methods in sdk_names()["classes"].items():
        assert real.get(name, {}).get("kind") == "class", f"no class {name} in the SDK"
        missing = set(methods) - set(real[name]["methods"])
        assert not missing, f"{name} lacks {sorted(missing)} in the SDK"

