"""Starts a real Orthanc with the plugin for integration tests, and talks to it as users do."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import requests

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ORTHANC_NAS_VENV", REPO / ".venv"))
ORTHANC = "/usr/sbin/Orthanc"
ADMIN_PIN = "Initial-Bootstrap-PIN-2024"
READY_TIMEOUT = 90.0
GATE = "libOrthancNasGate.so"


@functools.cache
def _orthanc_version(command: tuple[str, ...]) -> str:
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return out.split()[1]


@dataclass(frozen=True)
class Platform:
    """Where Orthanc runs: this machine, or a Debian root file system made by
    scripts/trixie-root (``ORTHANC_NAS_PLATFORM=trixie:/path/to/root``).

    Inside a root, Orthanc runs under chroot with the project installed in ``/opt/orthanc-nas``
    (its venv and its C gate, built there), and the plugin's Python code from this repository,
    which scripts/trixie-root bind-mounts at the same path, as it does /tmp (test data).
    Everything else (storescu, Samba, Chromium, requests) stays on this machine: a chroot shares
    its loopback.
    """

    name: str
    root: Path | None = None
    inside: str = "/opt/orthanc-nas"

    @classmethod
    def from_env(cls, value: str | None) -> Platform:
        if not value or value == "host":
            return cls("host")
        name, sep, root = value.partition(":")
        if not sep or not name or not Path(root, "usr/sbin/Orthanc").is_file():
            raise ValueError(f"ORTHANC_NAS_PLATFORM={value!r}: expected NAME:ROOT with Orthanc "
                             "in ROOT (see scripts/trixie-root)")
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        mounted = {line.split()[4] for line in mountinfo}
        if not {f"{root}/tmp", f"{root}{REPO}"} <= mounted:
            raise ValueError(f"{root} is not mounted: run through `scripts/trixie-root run`")
        return cls(name, Path(root))

    def wrap(self, argv: list[str]) -> list[str]:
        """A command line run on this platform (paths as seen inside the root)."""
        return ["chroot", str(self.root), *argv] if self.root else argv

    def command(self, *args: str) -> list[str]:
        """Orthanc's command line on this platform."""
        return self.wrap([ORTHANC, *args])

    def orthanc_version(self) -> str:
        """The version the installed Orthanc reports (``Orthanc --version``'s first line)."""
        return _orthanc_version(tuple(self.command("--version")))

    def env(self) -> dict[str, str]:
        """What differs in Orthanc's environment: the venv made inside the root."""
        return {"ORTHANC_NAS_VENV": f"{self.inside}/.venv"} if self.root else {}

    def plugins(self, plugins: list[str]) -> list[str]:
        """The gate built inside the root (for its compiler and Orthanc SDK) instead of ours."""
        if not self.root:
            return plugins
        return [f"{self.inside}/plugin/gate/{GATE}" if Path(p).name == GATE else p
                for p in plugins]


PLATFORM = Platform.from_env(os.environ.get("ORTHANC_NAS_PLATFORM"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_config(text: str, env: Mapping[str, str]) -> Any:
    """Orthanc's own substitution of ${VAR} and ${VAR:-default} in the raw text, then JSON."""

    def sub(match: re.Match[str]) -> str:
        name, _, default = match.group(1).partition(":-")
        return env.get(name) or default

    return json.loads(re.sub(r"\$\{([^}]*)\}", sub, text))


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Polls ``predicate`` until it returns a truthy value (readiness, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class OrthancServer:
    """One Orthanc process with the plugin, on free ports, in its own data directory."""

    def __init__(self, workdir: Path, overrides: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.clock_file = workdir / "clock-offset"
        self.log_path = workdir / "orthanc.log"
        self.config_path = workdir / "orthanc.json"
        self.env = {**os.environ, "ORTHANC_NAS_HOME": str(REPO), "ORTHANC_NAS_VENV": str(VENV),
                    "ORTHANC_NAS_DATA_DIR": str(self.data_dir),
                    "ORTHANC_NAS_HTTP_PORT": str(self.http_port),
                    "ORTHANC_NAS_DICOM_PORT": str(self.dicom_port),
                    "ORTHANC_NAS_ADMIN_PIN": ADMIN_PIN,
                    "ORTHANC_NAS_TEST_CLOCK_FILE": str(self.clock_file),
                    "TCP_NODELAY": "1", **PLATFORM.env(), **(env or {})}
        base = render_config((REPO / "orthanc.json").read_text(), self.env)
        self.config = deep_merge(base, overrides or {})
        self.offset = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(self.config)
        if "Plugins" in config:
            config["Plugins"] = PLATFORM.plugins(config["Plugins"])
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> OrthancServer:
        self._write_config()
        self.set_clock_offset(self.offset)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(PLATFORM.command(str(self.config_path)), env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_until(self._ready, READY_TIMEOUT, "Orthanc to answer /api/health")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return requests.get(self.url + "/api/health", timeout=2).status_code in (200, 503)
        except requests.ConnectionError:
            return False

    def run_to_exit(self, timeout: float = 60) -> int:
        """Starts Orthanc expecting it to stop by itself (refused configuration)."""
        self._write_config()
        with self.log_path.open("ab") as log:
            return subprocess.run(PLATFORM.command(str(self.config_path)), env=self.env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  cwd=self.workdir).returncode

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def set_clock_offset(self, seconds: float) -> None:
        self.offset = seconds
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(str(seconds))
        tmp.replace(self.clock_file)

    def advance_clock(self, seconds: float) -> None:
        self.set_clock_offset(self.offset + seconds)

    def now(self) -> float:
        return time.time() + self.offset

    def client(self) -> Client:
        return Client(self)


@dataclass
class Account:
    username: str
    pin: str
    role: str
    totp_secret: str | None = None
    backup_codes: list[str] | None = None
    last_step: int = 0


class Client:
    """A browser-like HTTP client: cookies, and the Origin header our pages send."""

    def __init__(self, server: OrthancServer) -> None:
        self.server = server
        self.http = requests.Session()
        self.http.headers["Origin"] = server.url
        self.account: Account | None = None  # who this client last logged in as

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, self.server.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=json_body, **kwargs)

    def put(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, json=json_body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def totp_code(self, account: Account) -> str:
        """A fresh code the server accepts: never a step already used (replay protection).

        The server accepts one step either side. The previous step is used only early in the
        current one, so a step boundary passing before the request arrives cannot void it.
        """
        assert account.totp_secret
        now = self.server.now()
        current = int(now // 30)
        earliest = current - 1 if now % 30 < 20 else current
        step = max(earliest, account.last_step + 1)
        if step > current + 1:
            self.server.advance_clock(30 * (step - current - 1))
            current = int(self.server.now() // 30)
        account.last_step = step
        return str(pyotp.TOTP(account.totp_secret).generate_otp(step))

    def login(self, account: Account) -> requests.Response:
        self.account = account
        r = self.post("/api/login", {"username": account.username, "pin": account.pin})
        if r.status_code == 200 and r.json()["status"] == "2fa_required":
            r = self.post("/api/2fa/verify", {"code": self.totp_code(account)})
        assert r.status_code == 200, r.text
        return r

    def ensure_logged_in(self) -> None:
        """Logs in again when a test (or a restart) ended this client's session."""
        assert self.account is not None
        if self.get("/api/profile").status_code != 200:
            self.login(self.account)

    def onboard(self, account: Account, new_pin: str) -> None:
        """First login: change the temporary PIN and, when required, enroll TOTP."""
        r = self.login(account)
        body = r.json()
        if body["must_change_pin"]:
            r = self.put("/api/profile", {"current_pin": account.pin, "new_pin": new_pin})
            assert r.status_code == 200, r.text
            account.pin = new_pin
        if body["must_enroll_totp"]:
            self.enroll_totp(account)

    def enroll_totp(self, account: Account) -> None:
        r = self.post("/api/2fa/setup/totp", {"pin": account.pin})
        assert r.status_code == 200, r.text
        account.totp_secret = r.json()["secret"]
        account.last_step = 0
        r = self.post("/api/2fa/setup/totp/verify", {"code": self.totp_code(account)})
        assert r.status_code == 200, r.text
        account.backup_codes = r.json()["backup_codes"]


def admin_account() -> Account:
    return Account("admin", ADMIN_PIN, "admin")


def make_user(admin: Client, username: str, role: str) -> tuple[Client, Account]:
    """Creates a user through the admin API and completes their first login."""
    temp = "Temporary-PIN-4711"
    r = admin.post("/api/admin/users", {"username": username, "role": role, "pin": temp})
    assert r.status_code == 200, r.text
    account = Account(username, temp, role)
    client = admin.server.client()
    client.onboard(account, "Own-Secret-PIN-0815")
    return client, account


def storescu(server: OrthancServer, files: list[Path], aet: str = "STORESCU") -> (
        subprocess.CompletedProcess[str]):
    """Sends files with DCMTK's storescu, as a modality does."""
    # DCMTK's, explicitly: pynetdicom installs a slower `storescu` of its own in the venv.
    return subprocess.run(["/usr/bin/storescu", "-aet", aet, "-aec", "ORTHANC", "127.0.0.1",
                           str(server.dicom_port), *map(str, files)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TCP_NODELAY": "1"})
