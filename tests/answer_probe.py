"""Orthanc's PythonScript for tests/integration/test_answers.py: routes that answer through
``orthanc_nas.answer`` exactly what a test asks for (a status, a bad header, a failing
handler), so every case is checked against the real Orthanc's HTTP output."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))

import orthanc

from orthanc_nas.answer import answer
from orthanc_nas.web import Response, json_response, redirect

BAD_HEADERS = {"crlf": ("X-Probe", "a\r\nSet-Cookie: injected=1"), "lf": ("X-Probe", "a\nb"),
               "latin1": ("Content-Disposition", 'attachment; filename="caf\u00e9.zip"'),
               "nul": ("X-Probe", "a\x00b"), "long": ("X-Probe", "x" * 100_000),
               "name": ("X-Probe: evil", "1")}


def _case(uri: str, kind: str, arg: str) -> Response:
    if kind == "status":
        return json_response({"error": "probe", "asked": int(arg)}, int(arg))
    if kind == "redirect":
        return redirect("/somewhere")
    if kind == "header":
        response = json_response({"ok": True})
        response.headers.append(BAD_HEADERS[arg])
        return response
    if kind == "raise":
        raise RuntimeError("share token abcdef must not be logged")
    if kind == "str-body":
        return Response(200, "text", "text/plain")  # type: ignore[arg-type]
    if kind == "health":
        return json_response({"status": "ok"})
    raise KeyError(uri)


def _route(output, uri, **request):  # type: ignore[no-untyped-def]
    kind, _, arg = uri.removeprefix("/probe/").partition("/")
    answer(output, str(request.get("method", "")), uri, lambda: _case(uri, kind, arg),
           orthanc.LogError)


def _health(output, uri, **request):  # type: ignore[no-untyped-def]
    answer(output, "GET", uri, lambda: _case(uri, "health", ""), orthanc.LogError)


orthanc.RegisterRestCallback("/probe/(.*)", _route)
orthanc.RegisterRestCallback("/api/health", _health)
