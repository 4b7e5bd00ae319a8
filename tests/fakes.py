"""The fakes of what the plugin talks to in Orthanc, one of each, shared by the unit tests.

- ``FakeOrthanc``: Orthanc's REST API as ``orthanc_api.OrthancApi`` (what the plain-Python side
  sees), with configurable answers.
- ``FakeLog``: the log, keeping its lines.
- ``fake_orthanc_module()``: the ``orthanc`` SDK module as ``adapter.py`` and ``answer.py`` use
  it (registrations, REST calls, configuration, logging, enums, the REST output and the stored
  DICOM instance). ``tests/integration/test_sdk_fake.py`` checks every name it defines against
  the real module inside a real Orthanc, and the enums' values too.
"""

from __future__ import annotations

import enum
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orthanc_nas.orthanc_api import OrthancError

MISSING: Any = object()
# An answer: a JSON value (or bytes), an exception to raise, or a callable making one of them
# (called with no argument for GET/DELETE, with the body for POST/PUT).
Answer = Any


def _resolve(answer: Answer, *args: Any) -> Any:
    if callable(answer) and not isinstance(answer, type):
        answer = answer(*args)
    if isinstance(answer, BaseException):
        raise answer
    return answer


class FakeOrthanc:
    """Orthanc's REST API with canned answers, recording every call.

    ``resources`` answers GET by exact URI; an unknown URI answers ``missing`` when given, else
    raises ``OrthancError("404 ...")`` as Orthanc refuses an unknown resource. ``posts`` and
    ``puts`` answer by URI (``post_otherwise``, ``{}`` unless given, and ``b""`` for other
    URIs); DELETE always succeeds.
    """

    def __init__(self, resources: dict[str, Answer] | None = None, *,
                 posts: dict[str, Answer] | None = None, puts: dict[str, Answer] | None = None,
                 missing: Answer = MISSING, post_otherwise: Answer = None) -> None:
        self.resources: dict[str, Answer] = dict(resources or {})
        self.posts: dict[str, Answer] = dict(posts or {})
        self.puts: dict[str, Answer] = dict(puts or {})
        self.missing = missing
        self.post_otherwise: Answer = {} if post_otherwise is None else post_otherwise
        self.calls: list[tuple[str, str]] = []  # (method, uri), in order
        self.bodies: list[tuple[str, bytes]] = []  # (uri, body) of POST and PUT

    def uris(self, method: str = "GET") -> list[str]:
        return [uri for m, uri in self.calls if m == method]

    def get(self, uri: str) -> Any:
        self.calls.append(("GET", uri))
        if uri in self.resources:
            return _resolve(self.resources[uri])
        if self.missing is not MISSING:
            return _resolve(self.missing)
        raise OrthancError(f"404 {uri}")

    def get_bytes(self, uri: str) -> bytes:
        return _as_bytes(self.get(uri))

    def post(self, uri: str, body: bytes) -> Any:
        self.calls.append(("POST", uri))
        self.bodies.append((uri, body))
        return _resolve(self.posts.get(uri, self.post_otherwise), body)

    def post_bytes(self, uri: str, body: bytes) -> bytes:
        return _as_bytes(self.post(uri, body))

    def put_bytes(self, uri: str, body: bytes) -> bytes:
        self.calls.append(("PUT", uri))
        self.bodies.append((uri, body))
        return _as_bytes(_resolve(self.puts.get(uri, b""), body))

    def delete(self, uri: str) -> None:
        self.calls.append(("DELETE", uri))


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


@dataclass
class FakeLog:
    lines: list[str] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(message)

    def error(self, message: str) -> None:
        self.lines.append(message)


# ---- the ``orthanc`` SDK module ------------------------------------------------------------
# The enums' values are the C SDK's (OrthancCPlugin.h); the integration test compares them.

class ChangeType(enum.IntEnum):
    COMPLETED_SERIES = 0
    DELETED = 1
    NEW_CHILD_INSTANCE = 2
    NEW_INSTANCE = 3
    NEW_PATIENT = 4
    NEW_SERIES = 5
    NEW_STUDY = 6
    STABLE_PATIENT = 7
    STABLE_SERIES = 8
    STABLE_STUDY = 9
    ORTHANC_STARTED = 10
    ORTHANC_STOPPED = 11


class ResourceType(enum.IntEnum):
    PATIENT = 0
    STUDY = 1
    SERIES = 2
    INSTANCE = 3
    NONE = 4


class HttpMethod(enum.IntEnum):
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4


class RestOutput:
    """What a REST callback answers through; records the calls (``calls``, ``status``,
    ``body``). ``plugin_40``: SendHttpStatus(status, text, size) as plugin 4.0 wants (4.2+:
    (status, body)); ``sendable``: the statuses Orthanc accepts (others break the answer)."""

    def __init__(self, plugin_40: bool = False, sendable: frozenset[int] | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.status: int | None = None
        self.body: bytes | None = None
        self._plugin_40 = plugin_40
        self._sendable = sendable

    def SetHttpHeader(self, name: str, value: str) -> None:
        self.calls.append(("header", name, value))

    def AnswerBuffer(self, body: bytes, content_type: str) -> None:
        self.calls.append(("answer", body, content_type))
        self.status, self.body = 200, bytes(body)

    def SendHttpStatus(self, status: int, *rest: Any) -> None:
        if len(rest) != (2 if self._plugin_40 else 1):
            raise TypeError(f"function takes exactly {3 if self._plugin_40 else 2} arguments")
        if self._sendable is not None and status not in self._sendable:
            raise ValueError("Parameter out of range")
        self.calls.append(("status", status, rest[0]))
        body = rest[0]
        self.status, self.body = status, body.encode() if isinstance(body, str) else bytes(body)

    def headers(self) -> dict[str, str]:
        return {c[1]: c[2] for c in self.calls if c[0] == "header"}

    def final(self) -> tuple[Any, ...]:
        return self.calls[-1]


class DicomInstance:
    """The instance OnStoredInstance hands over (borrowed in the real SDK)."""

    def __init__(self, data: bytes, remote_aet: str = "", tags: dict[str, Any] | None = None
                 ) -> None:
        self._data = data
        self._aet = remote_aet
        self._tags = tags or {}

    def GetInstanceData(self) -> bytes:
        return self._data

    def GetInstanceRemoteAet(self) -> str:
        return self._aet

    def GetInstanceSimplifiedJson(self) -> str:
        return json.dumps(self._tags)


class FakeSdk(types.ModuleType):
    """The ``orthanc`` module: registrations are kept, REST calls go to a ``FakeOrthanc``
    (its refusals raise a plain exception, as the SDK's do), log lines are kept."""

    ChangeType = ChangeType
    ResourceType = ResourceType
    HttpMethod = HttpMethod
    RestOutput = RestOutput
    DicomInstance = DicomInstance

    def __init__(self, configuration: dict[str, Any] | None = None,
                 rest: FakeOrthanc | None = None) -> None:
        super().__init__("orthanc")
        self.configuration = configuration or {}
        self.rest = rest or FakeOrthanc()
        self.logs: list[tuple[str, str]] = []  # (level, message)
        self.filter: Callable[..., bool] | None = None
        self.rest_callbacks: dict[str, Callable[..., None]] = {}
        self.on_stored: Callable[[Any, str], None] | None = None
        self.on_change: Callable[[int, int, str], None] | None = None
        self.explorer_js: str | None = None
        self.token = "fake-rest-api-token"

    # registrations
    def RegisterIncomingHttpRequestFilter(self, callback: Callable[..., bool]) -> None:
        self.filter = callback

    def RegisterRestCallback(self, pattern: str, callback: Callable[..., None]) -> None:
        self.rest_callbacks[pattern] = callback

    def RegisterOnStoredInstanceCallback(self, callback: Callable[[Any, str], None]
                                         ) -> None:
        self.on_stored = callback

    def RegisterOnChangeCallback(self, callback: Callable[[int, int, str], None]
                                 ) -> None:
        self.on_change = callback

    def ExtendOrthancExplorer(self, javascript: str) -> None:
        self.explorer_js = javascript

    # Orthanc's own REST API, in-process
    def RestApiGet(self, uri: str) -> bytes:
        return self._rest(lambda: self.rest.get_bytes(uri))

    def RestApiPost(self, uri: str, body: bytes) -> bytes:
        return self._rest(lambda: self.rest.post_bytes(uri, body))

    def RestApiPut(self, uri: str, body: bytes) -> bytes:
        return self._rest(lambda: self.rest.put_bytes(uri, body))

    def RestApiDelete(self, uri: str) -> None:
        self._rest(lambda: self.rest.delete(uri))

    @staticmethod
    def _rest(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except OrthancError as exc:  # the SDK raises its own exception, never ours
            raise ValueError(f"(0, '{exc}')") from None

    # configuration, token, log
    def GetConfiguration(self) -> str:
        return json.dumps(self.configuration)

    def GenerateRestApiAuthorizationToken(self) -> str:
        return self.token

    def LogInfo(self, message: str) -> None:
        self.logs.append(("info", message))

    def LogWarning(self, message: str) -> None:
        self.logs.append(("warning", message))

    def LogError(self, message: str) -> None:
        self.logs.append(("error", message))


def sdk_names() -> dict[str, Any]:
    """What the fake claims of the real module: its functions, its enums with their members'
    values, its classes with their methods (tests/integration/test_sdk_fake.py checks them)."""
    functions, enums, classes = [], {}, {}
    for name in dir(FakeSdk):
        value = getattr(FakeSdk, name)
        if not name[:1].isupper():
            continue
        if isinstance(value, type) and issubclass(value, enum.IntEnum):
            enums[name] = {k: m.value for k, m in value.__members__.items()}  # aliases too
        elif isinstance(value, type):
            classes[name] = [m for m in vars(value) if m[:1].isupper()]
        else:
            functions.append(name)
    return {"functions": functions, "enums": enums, "classes": classes}


def fake_orthanc_module(configuration: dict[str, Any] | None = None,
                        rest: FakeOrthanc | None = None) -> FakeSdk:
    return FakeSdk(configuration, rest)
