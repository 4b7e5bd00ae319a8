"""How a plugin Response becomes calls on Orthanc's output (orthanc_nas.answer), on a fake
output of plugin 4.0's signatures; tests/integration/test_answers.py checks the real Orthanc."""

from __future__ import annotations

from typing import Any

import pytest

from orthanc_nas.answer import SENDABLE, answer
from orthanc_nas.web import ApiError, Response, error_response, json_response, redirect


class Output:
    """Plugin 4.0's REST output: SendHttpStatus(status, text, size); refuses what Orthanc
    1.10.1 refuses (a status outside SENDABLE breaks the answer)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def SetHttpHeader(self, name: str, value: str) -> None:
        self.calls.append(("header", name, value))

    def AnswerBuffer(self, body: bytes, content_type: str) -> None:
        self.calls.append(("answer", body, content_type))

    def SendHttpStatus(self, status: int, *rest: Any) -> None:
        if len(rest) != 2:
            raise TypeError("function takes exactly 3 arguments")
        if status not in SENDABLE:
            raise ValueError("Parameter out of range")
        self.calls.append(("status", status, rest[0]))

    def headers(self) -> dict[str, str]:
        return {c[1]: c[2] for c in self.calls if c[0] == "header"}

    def final(self) -> tuple[Any, ...]:
        return self.calls[-1]


def run(response: Response | Exception) -> tuple[Output, list[str]]:
    output, logged = Output(), []

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
