"""How a plugin Response becomes calls on Orthanc's output (orthanc_nas.answer), on a fake
output of plugin 4.0's signatures; tests/integration/test_answers.py checks the real Orthanc."""

from __future__ import annotations

import pytest

from fakes import RestOutput
from orthanc_nas.answer import SENDABLE, answer
from orthanc_nas.web import ApiError, Response, error_response, json_response, redirect


def output_40() -> RestOutput:
    """Plugin 4.0's REST output, refusing what Orthanc 1.10.1 refuses (a status outside
    SENDABLE breaks the answer)."""
    return RestOutput(plugin_40=True, sendable=SENDABLE)


def run(response: Response | Exception) -> tuple[RestOutput, list[str]]:
    output, logged = output_40(), []

    def handle() -> Response:
        if isinstance(response, Exception):
            raise response
        return response

    answer(output, "GET", "/s/" + "T" * 43 + "/x", handle, logged.append)
    return output, logged


def test_200_is_answer_buffer_and_errors_carry_their_json_body() -> None:
    output, logged = run(json_response({"a": 1}))
    assert output.final() == ("answer", b'{"a":1}', "application/json; charset=utf-8")
    output, logged = run(error_response(ApiError(409, "busy")))
    assert output.final() == ("status", 409, '{"error":"busy"}') and not logged
    assert output.headers()["Content-Type"].startswith("application/json")


def test_statuses_orthanc_refuses_are_mapped() -> None:
    output, _ = run(error_response(ApiError(429, "slow down")))
    assert output.final()[:2] == ("status", 503) and output.headers()["Retry-After"] == "60"
    output, _ = run(error_response(ApiError(405, "method PUT not allowed",
                                            allowed=["GET", "POST", "GET"])))
    assert output.final()[:2] == ("status", 400) and output.headers()["Allow"] == "GET, POST"
    output, _ = run(redirect("/ui/login"))
    assert output.final() == ("status", 302, "") and output.headers()["Location"] == "/ui/login"


@pytest.mark.parametrize("response", [
    Response(204), Response(418, b"{}"), Response(200, b"x", headers=[("X-A", "a\r\nB: 1")]),
    Response(200, b"x", headers=[("Content-Disposition", "filename=\u00e9")]),
    Response(200, "text"),  # type: ignore[arg-type]
    Response(400, b"\xff"), RuntimeError("token in the message"),
])
def test_anything_unsendable_is_one_logged_json_500(response: Response | Exception) -> None:
    output, logged = run(response)
    assert output.final() == ("status", 500, '{"error":"internal error"}')
    assert len(logged) == 1 and "<token>" in logged[0] and "TTTT" not in logged[0]
    assert "a\r\n" not in logged[0] and "token in the message" not in logged[0]
