"""Orthanc's PythonScript for tests/integration/test_sdk_fake.py: writes what the real
``orthanc`` module holds (names, enums with their values, classes with their methods, each
callable's docstring and signature when it has one) as JSON to $ORTHANC_NAS_SDK_DUMP, and
answers /api/health so the harness knows Orthanc is up."""

import inspect
import json
import os

import orthanc


def _signature(value):
    try:
        return str(inspect.signature(value))
    except (TypeError, ValueError):
        return None  # most C functions carry none: the docstring says it


def _describe(value):
    if isinstance(value, type):
        members = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        ints = {k: v for k, v in members.items() if isinstance(v, int)}
        return {"kind": "enum" if ints and len(ints) == len(members) else "class",
                "values": ints, "methods": sorted(k for k, v in members.items()
                                                  if callable(v) or not isinstance(v, int)),
                "doc": value.__doc__}
    if callable(value):
        return {"kind": "function", "doc": value.__doc__, "signature": _signature(value)}
    return {"kind": type(value).__name__, "value": repr(value)}


dump = {name: _describe(getattr(orthanc, name)) for name in dir(orthanc)
        if not name.startswith("__")}
path = os.environ["ORTHANC_NAS_SDK_DUMP"]
with open(path + ".tmp", "w") as out:
    json.dump(dump, out, indent=1, sort_keys=True)
os.replace(path + ".tmp", path)


def _health(output, uri, **request):
    output.AnswerBuffer(b'{"status": "ok"}', "application/json")


orthanc.RegisterRestCallback("/api/health", _health)
