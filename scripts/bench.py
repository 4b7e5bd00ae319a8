"""Benchmark: vanilla Orthanc and Orthanc with the OrthancNAS plugin, side by side.

One run starts a real Samba share, a vanilla Orthanc (same binary and orthanc.json, without the
Python and DICOMweb plugins and without the OrthancNAS section) and Orthanc with the plugin as
shipped (2FA on, bcrypt cost 12) mirroring to the share. Both are fed the same generated files,
in interleaved runs (vanilla then plugin, figure by figure, ``--pairs`` times). Medians, ratios
and goals are printed; every raw figure goes to a JSON file.

Figures: 1 C-STORE ingest with the mirror draining, 2 ingest with the NAS down, 3 authorized
reads (wrk), 4 reads while a mirror backlog drains, 5 drain MB/s vs smbclient's mput, 6 end to
end vs ingest + smbclient, 7 login vs one bare bcrypt check, 8 RSS after a large ingest (both
Orthancs restarted first, so that the pairs' heap history does not dominate), 9 reads by many
users at once (``Sizes.users`` sessions, each logged in with TOTP, rotated request by request),
10 reads the gate cannot answer from one remembered URI: ``GET /studies/<id>`` with a random
query string each time, and a rotation over the fixture's distinct instance URIs (as a viewer
asks them).

    scripts/bench [--pairs N] [--smoke] [--out FILE] [--read-seconds S] [--keep] [--only 1,10]
                  [--allow-threads]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import bcrypt  # noqa: E402
import requests  # noqa: E402

from dicom_factory import write_series  # noqa: E402
from harness import (  # noqa: E402
    PLATFORM,
    Account,
    Client,
    OrthancServer,
    admin_account,
    make_user,
    wait_until,
)
from samba import SMB_PASSWORD, SMB_USER, SambaServer  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from delay_proxy import DelayProxy  # noqa: E402

STORESCU = "/usr/bin/storescu" if Path("/usr/bin/storescu").exists() else "storescu"
MODALITIES = {"storescu": ["STORESCU", "127.0.0.1", 11112]}
ADMIN_PIN = "Bench-Harbor-PIN-2024!"
READ_PATIENT = "BENCH-READ"
INGEST_PATIENTS = ("BENCH-SMALL", "BENCH-BIG")
MEM_PATIENT = "BENCH-MEM"
DRAIN_TIMEOUT = 600.0
POLL = 0.1
BCRYPT_COST = 12
MIB = 1024 * 1024
FOREIGN_CPU_WARN = 2.0  # CPU seconds used by other processes during a pair
PROXY_DELAY = 0.001  # seconds each way (figure 11)
SCRUB_WINDOW = 10.0  # seconds over which the scrub's rate is measured (figure 12)
SCRUB_DEFAULT = 20  # nas.scrub_mb_per_second as shipped


@dataclass(frozen=True)
class Sizes:
    small: int  # 64x64 CT instances per ingest run
    big: int  # 512x512 16-bit instances (~0.5 MB) per ingest run
    per_series: int  # instances per series in the ingest set
    read_seconds: int  # wrk -d
    logins: int  # logins (and bare bcrypt checks) per pair
    memory: int  # instances ingested for the RSS figure (RSS also read at half)
    read_fixture: int  # instances of the study read by GET /studies/<id>
    users: int  # sessions reading at once in figure 9


FULL = Sizes(small=1000, big=200, per_series=100, read_seconds=5, logins=7, memory=10_000,
             read_fixture=20, users=50)
SMOKE = Sizes(small=20, big=4, per_series=10, read_seconds=1, logins=2, memory=200,
              read_fixture=5, users=50)
CROWD_ROLE = "user"  # a role that must use TOTP
CROWD_REFRESH = 20 * 60.0  # seconds: sessions checked again before the idle timeout (30 min)
# wrk: one request per session in turn (requests formatted once per thread); the same script,
# cookies included, on both sides so that they parse the same headers.
CROWD_LUA = """local cookies = {%s}
local requests, i = {}, 0
function init(args)
  for _, cookie in ipairs(cookies) do
    requests[#requests + 1] = wrk.format(nil, nil, {["Cookie"] = cookie})
  end
end
function request()
  i = i %% #requests + 1
  return requests[i]
end
"""
# wrk: figure 10, the same study with a new query string each time (a viewer's arguments).
ARGS_LUA = """request = function()
  return wrk.format("GET", wrk.path .. "?n=" .. math.random(1e9))
end
"""
# wrk: figure 10, distinct instance URIs in turn.
PATHS_LUA = """local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""
INSTANCE_SUFFIXES = ("", "/simplified-tags", "/metadata", "/header")


# ---- the figures ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    key: str
    number: int
    label: str
    unit: str
    kind: str  # "ratio" (plugin / vanilla) or "delta" (plugin - vanilla)
    op: str  # ">=", "<=" or "" (no goal)
    goal: float = 0.0
    plugin_only: bool = False


def figures(sizes: Sizes) -> list[Figure]:
    n, half = sizes.memory, sizes.memory // 2
    return [
        Figure("ingest_mirror_on", 1, "C-STORE ingest, NAS up, mirror draining", "inst/s",
               "ratio", ">=", 0.90),
        Figure("ingest_nas_down", 2, "C-STORE ingest, NAS down (queue only)", "inst/s",
               "ratio", ">=", 0.95),
        Figure("reads_system", 3, "GET /system", "req/s", "ratio", ">=", 0.70),
        Figure("reads_system_p99", 3, "GET /system p99", "ms", "delta", "<=", 1.0),
        Figure("reads_study", 3, "GET /studies/<id>", "req/s", "ratio", ">=", 0.70),
        Figure("reads_study_p99", 3, "GET /studies/<id> p99", "ms", "delta", "<=", 1.0),
        Figure("reads_during_drain", 4, "GET /studies/<id> while the mirror drains", "req/s",
               "ratio", ">=", 0.60),
        Figure("drain_mb_s", 5, "NAS copy (V: smbclient mput; P: mirror drain)", "MB/s",
               "ratio", ">=", 0.80),
        Figure("end_to_end_s", 6, "1st C-STORE to last file on NAS (V: ingest+smbclient)", "s",
               "ratio", "<=", 1.0),
        Figure("resume_s", 2, "Mirror resumes after the NAS is back (1st new file)", "s",
               "delta", "<=", 5.0, plugin_only=True),
        Figure("drain_proxy_mb_s", 11, "NAS copy, 1 ms each way (V: smbclient mput; P: drain)",
               "MB/s", "ratio", ">=", 0.80),
        Figure("scrub_mb_s", 12, f"Scrub read-verify at its default cap ({SCRUB_DEFAULT} MB/s)",
               "MB/s", "delta", "", plugin_only=True),
        Figure("login_p50_ms", 7, "Login p50 (V: one bare bcrypt check, cost 12)", "ms",
               "ratio", "<=", 1.2),
        Figure("rss_full_mib", 8, f"Orthanc RSS, fresh start + {n:,} instances, NAS down", "MiB",
               "delta", "<=", 50.0),
        Figure("rss_half_mib", 8, f"Orthanc RSS, fresh start + {half:,} instances", "MiB",
               "delta", ""),
        Figure("worker_rss_full_mib", 8, f"Mirror worker RSS after {n:,} (V: none)", "MiB",
               "delta", "", plugin_only=True),
        Figure("worker_rss_half_mib", 8, f"Mirror worker RSS after {half:,} (V: none)", "MiB",
               "delta", "", plugin_only=True),
        Figure("reads_many_users", 9, f"GET /studies/<id>, {sizes.users} sessions in turn",
               "req/s", "ratio", ">=", 0.70),
        Figure("reads_many_users_p99", 9, f"GET /studies/<id>, {sizes.users} sessions p99",
               "ms", "delta", "<=", 1.0),
        Figure("many_users_from_memory", 9, "  of which allowed from the gate's memory", "%",
               "delta", ">=", 90.0, plugin_only=True),
        Figure("reads_args", 10, "GET /studies/<id>?n=<random>", "req/s", "ratio", ">=", 0.70),
        Figure("reads_args_p99", 10, "GET /studies/<id>?n=<random> p99", "ms", "delta", "<=",
               1.0),
        Figure("reads_args_from_memory", 10, "  of which allowed from the gate's memory", "%",
               "delta", "", plugin_only=True),
        Figure("reads_paths", 10, f"GET {len(INSTANCE_SUFFIXES)} URIs of each of "
               f"{sizes.read_fixture} instances in turn", "req/s", "ratio", ">=", 0.70),
        Figure("reads_paths_p99", 10, "  distinct instance URIs p99", "ms", "delta", "<=", 1.0),
        Figure("reads_paths_from_memory", 10, "  of which allowed from the gate's memory", "%",
               "delta", "", plugin_only=True),
    ]


class Results:
    def __init__(self, sizes: Sizes) -> None:
        self.figures = figures(sizes)
        self.raw: dict[str, dict[str, list[float]]] = {
            f.key: {"vanilla": [], "plugin": []} for f in self.figures}
        self.runs: list[dict[str, Any]] = []  # every measurement with its details

    def add(self, key: str, side: str, value: float, pair: int | None, **details: Any) -> None:
        self.raw[key][side].append(value)
        self.runs.append({"figure": key, "side": side, "pair": pair, "value": value, **details})
        shown = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
        extra = ", ".join(f"{k}={_short(v)}" for k, v in details.items())
        print(f"    {key:<22} {side:<7} {shown:>12}  {extra}", flush=True)

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for f in self.figures:
            v, p = self.raw[f.key]["vanilla"], self.raw[f.key]["plugin"]
            vm = statistics.median(v) if v else None
            pm = statistics.median(p) if p else None
            value: float | None = None
            if pm is not None:
                if f.kind == "ratio" and vm:
                    value = pm / vm
                elif f.kind == "delta":
                    value = pm - (vm or 0.0)
            met = None
            if f.op and value is not None:
                met = value >= f.goal if f.op == ">=" else value <= f.goal
            rows.append({**asdict(f), "vanilla": v, "plugin": p, "vanilla_median": vm,
                         "plugin_median": pm, "value": value, "met": met})
        return rows


def _short(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# ---- the servers ----------------------------------------------------------------------------


class VanillaServer(OrthancServer):
    """The same Orthanc binary and orthanc.json, without plugins and without OrthancNAS."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, {"DicomModalities": MODALITIES})
        for key in ("Plugins", "PythonScript", "OrthancNAS"):
            self.config.pop(key, None)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return requests.get(self.url + "/system", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False


class Side:
    """What the bench needs of one Orthanc: HTTP as its reader, C-STORE, deletion, RSS."""

    def __init__(self, name: str, server: OrthancServer, http: requests.Session,
                 cookie: str | None) -> None:
        self.name = name
        self.server = server
        self.http = http
        self.cookie = cookie  # "onas_session=..." for wrk, None on vanilla

    def get(self, path: str) -> Any:
        r = self.http.get(self.server.url + path, timeout=60, allow_redirects=False)
        if r.status_code != 200:
            raise RuntimeError(f"{self.name}: GET {path} answered {r.status_code}: {r.text[:200]}")
        return r.json()

    def instances(self) -> int:
        return int(self.get("/statistics")["CountInstances"])

    def delete_patients(self, patient_ids: tuple[str, ...]) -> None:
        for patient in self.get("/patients?expand"):
            if patient["MainDicomTags"].get("PatientID") in patient_ids:
                r = self.http.delete(f"{self.server.url}/patients/{patient['ID']}", timeout=300)
                if r.status_code != 200:
                    raise RuntimeError(f"{self.name}: DELETE patient answered {r.status_code}")

    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid


def storescu(side: Side, files: list[Path], timeout: float) -> float:
    """One association with all files; returns the seconds it took."""
    before = side.instances()
    start = time.perf_counter()
    done = subprocess.run([STORESCU, "-aet", "STORESCU", "-aec", "ORTHANC", "127.0.0.1",
                           str(side.server.dicom_port), *map(str, files)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TCP_NODELAY": "1"})
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{side.name}: storescu failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    after = side.instances()
    if after - before != len(files):
        raise RuntimeError(f"{side.name}: {after - before} new instances, not {len(files)}")
    return took


def rss_detail(pid: int) -> dict[str, float]:
    """VmRSS and its parts (anonymous, file-backed, shared memory) in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split(":", 1)[0]
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[name] = round(int(line.split()[1]) / 1024, 1)
    if "VmRSS" not in out:
        raise RuntimeError(f"no VmRSS for {pid}")
    return out


def rss_mib(pid: int) -> float:
    return rss_detail(pid)["VmRSS"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def foreign_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every user process outside the bench's own process tree: another test
    run or benchmark on the machine disturbs the figures, and the report says so."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        table[int(entry.name)] = (int(text.rsplit(")", 1)[1].split()[1]), comm)
    ours = {os.getpid()}
    for _ in range(64):  # bounded: the tree is never that deep
        grown = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
        if not grown:
            break
        ours |= grown
    kernel = {2} | {pid for pid, (ppid, _) in table.items() if ppid == 2}
    return {pid: (comm, cpu_seconds(pid)) for pid, (_, comm) in table.items()
            if pid not in ours and pid not in kernel}


def foreign_cpu_since(before: dict[int, tuple[str, float]]) -> tuple[float, list[str]]:
    """CPU seconds used by other processes since ``before``, and the busiest of them."""
    used = []
    for pid, (comm, now) in foreign_cpu().items():
        spent = now - before.get(pid, (comm, 0.0))[1]
        if spent > 0:
            used.append((spent, f"{comm}[{pid}] {spent:.1f}s"))
    used.sort(reverse=True)
    return round(sum(u for u, _ in used), 2), [name for _, name in used[:5]]


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def worker_pid(side: Side) -> int:
    for child in child_pids(side.pid()):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"orthanc_nas.mirror.worker" in cmdline:
            return child
    raise RuntimeError("the mirror worker process was not found")


# ---- wrk ----------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(url: str, seconds: int, cookie: str | None, script: Path | None = None) -> dict[
        str, float]:
    cmd = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    if script is not None:
        cmd += ["-s", str(script)]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if bad or errors:
        raise RuntimeError(f"wrk saw failed requests on {url}:\n{out}")
    return {"rps": float(rps.group(1)),
            "p50_ms": float(p50.group(1)) * _UNITS[p50.group(2)],
            "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)]}


# ---- the bench ----------------------------------------------------------------------------


class Bench:
    def __init__(self, sizes: Sizes, pairs: int, root: Path,
                 only: frozenset[int] | None = None, allow_threads: bool = False) -> None:
        self.sizes = sizes
        self.allow_threads = allow_threads
        self.pairs = pairs
        self.root = root
        self.only = only
        self.results = Results(sizes)
        self.samba: SambaServer | None = None
        self.vanilla_server: VanillaServer | None = None
        self.plugin_server: OrthancServer | None = None
        self.extra: dict[str, Any] = {}
        self.crowd: list[Client] = []
        self.crowd_checked = 0.0  # time.monotonic() when the crowd's sessions were last checked
        # Copies the figures' resets removed behind the mirror's back, of instances deleted
        # from Orthanc too: the scrub (figure 12) finds them gone and parks them as failed.
        self.known_failed = 0

    # -- setup ---------------------------------------------------------------------------

    def generate(self, pool: concurrent.futures.Executor) -> Iterator[
            concurrent.futures.Future[list[Path]]]:
        s = self.sizes
        data = self.root / "data"
        jobs = []
        for i in range(0, s.small, s.per_series):
            jobs.append((data / "ingest" / "small" / f"s{i // s.per_series:03}",
                         min(s.per_series, s.small - i), INGEST_PATIENTS[0], 64))
        for i in range(0, s.big, s.per_series):
            jobs.append((data / "ingest" / "big" / f"s{i // s.per_series:03}",
                         min(s.per_series, s.big - i), INGEST_PATIENTS[1], 512))
        jobs.append((data / "read", s.read_fixture, READ_PATIENT, 64))
        chunk = max(1, min(1000, s.memory // 2))
        memory = s.memory if self.only is None or 8 in self.only else 0
        for i in range(0, memory, chunk):
            jobs.append((data / "memory" / f"s{i // chunk:03}", min(chunk, s.memory - i),
                         MEM_PATIENT, 64))
        for folder, count, patient, size in jobs:
            yield pool.submit(write_series, folder, count, patient_id=patient, size=size)

    def setup(self) -> None:
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            futures = list(self.generate(pool))
            self.samba = SambaServer(self.root / "samba").start()
            nas = self.samba.nas_config()
            # Production clock: the harness's test clock stats a file at each now().
            no_test_clock = {"ORTHANC_NAS_TEST_CLOCK_FILE": ""}
            # Shipped retry settings (the resume figure), the scrub off but in figure 12 (the
            # figures' resets empty the share behind the mirror's back).
            nas = {**nas, "retry_base_seconds": 5, "retry_max_seconds": 300,
                   "scrub_mb_per_second": 0}
            overrides: dict[str, Any] = {"DicomModalities": MODALITIES,
                                         "OrthancNAS": {"nas": nas}}
            if self.allow_threads:  # Python plugin 4.3+: the GIL released during SDK calls
                overrides["Python"] = {"AllowThreads": True}
            self.plugin_server = OrthancServer(self.root / "plugin", overrides,
                                               env=no_test_clock)
            self.vanilla_server = VanillaServer(self.root / "vanilla")
            self.vanilla_server.start()
            self.plugin_server.start()
            files = [f for fut in futures for f in fut.result(timeout=600)]
        data = self.root / "data"
        self.ingest_files = sorted(f for f in files if (data / "ingest") in f.parents)
        self.read_files = sorted(f for f in files if (data / "read") in f.parents)
        self.memory_files = sorted(f for f in files if (data / "memory") in f.parents)
        self.ingest_bytes = sum(f.stat().st_size for f in self.ingest_files)

        self.admin = self.plugin_server.client()
        self.admin_account = admin_account()
        self.admin.onboard(self.admin_account, ADMIN_PIN)
        cookie = self.admin.http.cookies.get("onas_session")
        assert cookie, "no session cookie after the admin's login"
        self.viewer, self.viewer_account = make_user(self.admin, "benchviewer", "viewer")
        if self.only is None or 9 in self.only:
            self.crowd = self.make_crowd(self.sizes.users)
        self.vanilla = Side("vanilla", self.vanilla_server, requests.Session(), None)
        self.plugin = Side("plugin", self.plugin_server, self.admin.http,
                           f"onas_session={cookie}")
        for side in (self.vanilla, self.plugin):
            storescu(side, self.read_files, 120)
        self.fixture_count = len(self.read_files)
        studies = self.vanilla.get("/studies?expand")
        self.study_id = next(s["ID"] for s in studies
                             if s["PatientMainDicomTags"]["PatientID"] == READ_PATIENT)
        self.plugin.get(f"/studies/{self.study_id}")  # same id on both (hash of the UIDs)
        wait_until(lambda: self.nas_status()["pending"] == 0, DRAIN_TIMEOUT,
                   "the read fixture to be mirrored")
        self.clear_share()
        health = self.admin.get("/api/health").json()
        self.extra["versions"] = {"orthanc": self.vanilla.get("/system")["Version"],
                                  "plugin": health.get("plugin_version")}
        self.extra["rss_at_start_mib"] = {"vanilla": rss_mib(self.vanilla.pid()),
                                          "plugin": rss_mib(self.plugin.pid()),
                                          "worker": rss_mib(worker_pid(self.plugin))}
        print(f"  data: {len(self.ingest_files)} ingest files "
              f"({self.ingest_bytes / 1e6:.1f} MB), {len(self.memory_files)} for memory; "
              f"study {self.study_id}", flush=True)

    def make_crowd(self, count: int) -> list[Client]:
        """``count`` users created through the admin API (one after the other: one admin
        session), then onboarded (PIN changed, TOTP enrolled) and logged in again with TOTP,
        a few at a time."""
        accounts = []
        temp = "Temporary-PIN-4711"
        for i in range(count):
            r = self.admin.post("/api/admin/users", {"username": f"benchcrowd{i:03}",
                                                     "role": CROWD_ROLE, "pin": temp})
            if r.status_code != 200:
                raise RuntimeError(f"creating a crowd user answered {r.status_code}: {r.text}")
            accounts.append(Account(f"benchcrowd{i:03}", temp, CROWD_ROLE))

        def onboard(account: Account) -> Client:
            self.admin.server.client().onboard(account, "Own-Secret-PIN-0815")
            assert account.totp_secret, f"{account.username} enrolled no TOTP"
            client = self.admin.server.client()  # a fresh browser: PIN, then TOTP
            r = client.login(account)
            if r.json().get("status") != "ok" or not client.http.cookies.get("onas_session"):
                raise RuntimeError(f"{account.username}: TOTP login answered {r.text[:200]}")
            return client

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            crowd = list(pool.map(onboard, accounts))
        self.crowd_checked = time.monotonic()
        return crowd

    def crowd_script(self) -> Path:
        """The wrk script rotating over the crowd's session cookies (checked alive first when
        the last check is old: a check is a request, and it would move ``last_seen``)."""
        if time.monotonic() - self.crowd_checked > CROWD_REFRESH:
            for client in self.crowd:
                client.ensure_logged_in()
            self.crowd_checked = time.monotonic()
        cookies = [f"onas_session={c.http.cookies.get('onas_session')}" for c in self.crowd]
        script = self.root / "crowd.lua"
        script.write_text(CROWD_LUA % ", ".join(json.dumps(c) for c in cookies))
        return script

    def gate_stats(self) -> dict[str, int]:
        """The C gate's counters (requests allowed from memory, asked of Python) and how often
        its memory was cleared."""
        r = self.admin.get("/api/health")
        gate: dict[str, Any] = r.json()["checks"]["gate"]
        if not gate.get("enabled"):
            raise RuntimeError(f"the C gate is not enabled: {gate}")
        return {k: int(gate[k]) for k in ("allowed_from_memory", "asked", "cleared")}

    def stop(self) -> None:
        for server in (self.plugin_server, self.vanilla_server):
            if server is not None:
                server.stop()
        if self.samba is not None:
            self.samba.stop()

    # -- helpers ---------------------------------------------------------------------------

    def nas_status(self) -> dict[str, Any]:
        r = self.admin.get("/api/nas/status")
        if r.status_code != 200:
            raise RuntimeError(f"/api/nas/status answered {r.status_code}: {r.text[:200]}")
        body: dict[str, Any] = r.json()
        return body

    def wait_drained(self, since: float, timeout: float = DRAIN_TIMEOUT) -> tuple[
            float, dict[str, Any]]:
        """Polls the mirror status until nothing is pending; returns (seconds, status)."""
        deadline = time.perf_counter() + timeout
        while True:
            status = self.nas_status()
            if status["pending"] == 0:
                took = time.perf_counter() - since
                if status["failed"] > self.known_failed:
                    raise RuntimeError(f"{status['failed']} items failed: {status['last_error']}")
                return took, status
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the mirror did not drain within {timeout}s: {status}")
            time.sleep(POLL)

    def share_files(self) -> list[Path]:
        assert self.samba is not None
        return [p for p in self.samba.share_dir.rglob("*") if p.is_file()]

    def clear_share(self) -> None:
        """Removes every file; the mirror's folders stay (its worker caches folders it made)."""
        assert self.samba is not None
        for path in self.share_files():
            path.unlink()
        for name in ("small", "big"):  # smbclient's own folders
            shutil.rmtree(self.samba.share_dir / name, ignore_errors=True)

    def reset(self, side: Side) -> None:
        """Deletes the ingested patients; readiness: only the read fixture is left."""
        side.delete_patients(INGEST_PATIENTS)
        wait_until(lambda: side.instances() == self.fixture_count, 120,
                   f"{side.name} to hold only the read fixture")
        if side is self.plugin:
            self.clear_share()
            assert self.share_files() == []

    def samba_stop(self) -> None:
        assert self.samba is not None
        self.samba.stop()

    def samba_start(self) -> None:
        assert self.samba is not None
        self.samba.start()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of both Orthancs and of the mirror worker."""
        try:
            worker = cpu_seconds(worker_pid(self.plugin))
        except RuntimeError:
            worker = 0.0
        return {"vanilla": cpu_seconds(self.vanilla.pid()),
                "plugin": cpu_seconds(self.plugin.pid()), "worker": worker}

    def cpu_since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.cpu()
        return {k: round(now[k] - before[k], 2) for k in now}

    def ingest_timeout(self, count: int) -> float:
        return 120 + count * 0.2

    # -- figures ---------------------------------------------------------------------------

    def ingest_vanilla(self, key: str, pair: int) -> float:
        """The vanilla side of an ingest figure (then emptied again); returns its seconds."""
        files, n = self.ingest_files, len(self.ingest_files)
        cpu = self.cpu()
        took = storescu(self.vanilla, files, self.ingest_timeout(n))
        self.results.add(key, "vanilla", n / took, pair, seconds=took,
                         cpu_s=self.cpu_since(cpu)["vanilla"])
        self.reset(self.vanilla)
        return took

    def fig1_ingest_mirror_on(self, pair: int) -> None:
        files, n = self.ingest_files, len(self.ingest_files)
        self.vanilla_ingest_s = self.ingest_vanilla("ingest_mirror_on", pair)

        before = self.nas_status()
        assert before["pending"] == 0 and before["connected"], before
        cpu = self.cpu()
        start = time.perf_counter()
        took = storescu(self.plugin, files, self.ingest_timeout(n))
        at_end = self.nas_status()
        ingest_cpu = self.cpu_since(cpu)
        e2e, _ = self.wait_drained(start)
        e2e_cpu = self.cpu_since(cpu)
        copied = len([p for p in self.share_files() if p.suffix == ".dcm"])
        if copied != n:
            raise RuntimeError(f"{copied} files on the share, not {n}")
        self.results.add("ingest_mirror_on", "plugin", n / took, pair, seconds=took,
                         mirrored_during_ingest=n - at_end["pending"],
                         cpu_s=ingest_cpu["plugin"], worker_cpu_s=ingest_cpu["worker"])
        self.results.add("end_to_end_s", "plugin", e2e, pair,
                         pending_after_ingest=at_end["pending"],
                         drain_after_ingest_s=e2e - took, cpu_s=e2e_cpu["plugin"],
                         worker_cpu_s=e2e_cpu["worker"])
        self.reset(self.plugin)

    def smbclient_mput(self, port: int) -> tuple[float, float]:
        """smbclient's mput of the ingest files; returns (seconds, its CPU seconds)."""
        assert self.samba is not None
        src = self.root / "data" / "ingest"
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            ["smbclient", "//127.0.0.1/nas", "-p", str(port), "-U",
             f"{SMB_USER}%{SMB_PASSWORD}", "-c",
             f"prompt OFF; recurse ON; lcd {src}; mput *"],
            capture_output=True, text=True, timeout=600)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"smbclient failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")
        copied = self.share_files()
        if len(copied) != len(self.ingest_files) or sum(
                p.stat().st_size for p in copied) != self.ingest_bytes:
            raise RuntimeError(f"smbclient copied {len(copied)} files, "
                               f"not {len(self.ingest_files)}")
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return took, round(used.ru_utime + used.ru_stime - children.ru_utime
                           - children.ru_stime, 2)

    def fig5_smbclient(self, pair: int) -> None:
        """The baseline NAS copy: smbclient's mput of the same files to the same share."""
        assert self.samba is not None
        took, cpu = self.smbclient_mput(self.samba.port)
        self.results.add("drain_mb_s", "vanilla", self.ingest_bytes / 1e6 / took, pair,
                         seconds=took, bytes=self.ingest_bytes, smbclient_cpu_s=cpu)
        self.results.add("end_to_end_s", "vanilla", self.vanilla_ingest_s + took, pair,
                         ingest_s=self.vanilla_ingest_s, smbclient_s=took)
        self.clear_share()

    def fig2_ingest_nas_down_and_fig5_drain(self, pair: int) -> None:
        files, n = self.ingest_files, len(self.ingest_files)
        self.ingest_vanilla("ingest_nas_down", pair)

        self.samba_stop()
        try:
            cpu = self.cpu()
            took = storescu(self.plugin, files, self.ingest_timeout(n))
            ingest_cpu = self.cpu_since(cpu)
            before = self.nas_status()
        finally:
            self.samba_start()
        restarted = time.perf_counter()
        cpu = self.cpu()
        self.results.add("ingest_nas_down", "plugin", n / took, pair, seconds=took,
                         pending=before["pending"], cpu_s=ingest_cpu["plugin"],
                         worker_cpu_s=ingest_cpu["worker"])
        # Figure 5: from smbd's restart to an empty queue; bytes from mirrored_bytes.
        first = None
        deadline = restarted + DRAIN_TIMEOUT
        while True:
            status = self.nas_status()
            now = time.perf_counter()
            if first is None and next(self.samba_share().rglob("*.dcm"), None) is not None:
                first = now
            if status["pending"] == 0:
                break
            if now > deadline:
                raise TimeoutError(f"the mirror did not drain: {status}")
            time.sleep(POLL)
        drain = now - restarted
        if status["failed"] > self.known_failed:
            raise RuntimeError(f"{status['failed']} items failed: {status['last_error']}")
        moved = status["mirrored_bytes"] - before["mirrored_bytes"]
        first = first or now
        self.results.add("resume_s", "plugin", first - restarted, pair)
        self.results.add("drain_mb_s", "plugin", moved / 1e6 / drain, pair, seconds=drain,
                         bytes=moved, items=status["mirrored"] - before["mirrored"],
                         reconnect_wait_s=first - restarted,
                         mb_s_after_first_copy=moved / 1e6 / max(now - first, 1e-6),
                         worker_cpu_s=self.cpu_since(cpu)["worker"])
        self.reset(self.plugin)

    def samba_share(self) -> Path:
        assert self.samba is not None
        return self.samba.share_dir

    def fig11_proxy(self, pair: int) -> None:
        """Both copies through a proxy adding 1 ms each way: per-file latency, as on a LAN.
        The mirror's figure runs from its first file on the share (its reconnection is the
        resume figure) to an empty queue."""
        assert self.samba is not None
        proxy = DelayProxy(self.samba.port, PROXY_DELAY).start()
        try:
            took, cpu = self.smbclient_mput(proxy.port)
            self.results.add("drain_proxy_mb_s", "vanilla", self.ingest_bytes / 1e6 / took,
                             pair, seconds=took, smbclient_cpu_s=cpu)
            self.clear_share()
            proxy.paused = True
            r = self.admin.post("/api/nas/config", {"port": proxy.port,
                                                     "password": SMB_PASSWORD})
            if r.status_code != 200:
                raise RuntimeError(f"NAS config answered {r.status_code}: {r.text[:200]}")
            proxy.drop_all()
            files = self.ingest_files
            storescu(self.plugin, files, self.ingest_timeout(len(files)))
            before = self.nas_status()
            proxy.paused = False
            first = wait_until(lambda: next(self.samba_share().rglob("*.dcm"), None)
                               and time.perf_counter(), DRAIN_TIMEOUT, "the first copy")
            cpu_before = self.cpu()
            drained, status = self.wait_drained(first)
            moved = status["mirrored_bytes"] - before["mirrored_bytes"]
            self.results.add("drain_proxy_mb_s", "plugin", moved / 1e6 / drained, pair,
                             seconds=drained, bytes=moved,
                             worker_cpu_s=self.cpu_since(cpu_before)["worker"])
        finally:
            self.admin.post("/api/nas/config", {"reset": True})
            proxy.stop()
        self.reset(self.plugin)

    def fig12_scrub(self, pair: int) -> None:
        """The scrub at its shipped cap over a window, once a drained ingest is on the share,
        with Orthanc's and the worker's CPU over the same window."""
        files = self.ingest_files
        storescu(self.plugin, files, self.ingest_timeout(len(files)))
        self.wait_drained(time.perf_counter())
        assert self.plugin_server is not None
        r = self.admin.post("/api/nas/config", {"scrub_mb_per_second": SCRUB_DEFAULT})
        if r.status_code != 200:
            raise RuntimeError(f"NAS config answered {r.status_code}: {r.text[:200]}")
        try:
            db = self.plugin_server.data_dir / "orthanc-nas.sqlite"
            wait_until(lambda: self.nas_status()["verified"] > 0, 60, "the scrub to start")
            cpu = self.cpu()
            start = time.time()
            time.sleep(SCRUB_WINDOW)  # a measuring window, not a wait for readiness
            end = time.time()
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                (verified,) = con.execute("SELECT COALESCE(SUM(size), 0) FROM mirror_queue"
                                          " WHERE verified_at BETWEEN ? AND ?",
                                          (start, end)).fetchone()
            used = self.cpu_since(cpu)
            self.results.add("scrub_mb_s", "plugin", verified / 1e6 / (end - start), pair,
                             bytes=verified, orthanc_cpu_s=used["plugin"],
                             worker_cpu_s=used["worker"])
        finally:
            self.admin.post("/api/nas/config", {"reset": True})
        wait_until(lambda: self.nas_status()["pending"] == 0, 120, "the scrub's re-queued items")
        self.known_failed = self.nas_status()["failed"]
        self.reset(self.plugin)

    def fig3_reads(self, pair: int) -> None:
        d = self.sizes.read_seconds
        for path, key in (("/system", "reads_system"),
                          (f"/studies/{self.study_id}", "reads_study")):
            for side in (self.vanilla, self.plugin):
                r = wrk(side.server.url + path, d, side.cookie)
                self.results.add(key, side.name, r["rps"], pair, p50_ms=r["p50_ms"])
                self.results.add(f"{key}_p99", side.name, r["p99_ms"], pair)

    def fig9_many_users(self, pair: int) -> None:
        """The read of figure 3 by many sessions at once, one request per session in turn:
        every session's ``last_seen`` is written now and then, which must not make the gate
        forget what it allowed the others."""
        d = self.sizes.read_seconds
        path = f"/studies/{self.study_id}"
        script = self.crowd_script()
        r = wrk(self.vanilla.server.url + path, d, None, script)
        self.results.add("reads_many_users", "vanilla", r["rps"], pair, p50_ms=r["p50_ms"])
        self.results.add("reads_many_users_p99", "vanilla", r["p99_ms"], pair)
        before = self.gate_stats()
        r = wrk(self.plugin.server.url + path, d, None, script)
        after = self.gate_stats()
        delta = {k: after[k] - before[k] for k in after}
        delta["asked"] -= 1  # the second gate_stats() call itself
        total = delta["allowed_from_memory"] + delta["asked"]
        share = 100.0 * delta["allowed_from_memory"] / max(total, 1)
        self.results.add("reads_many_users", "plugin", r["rps"], pair, p50_ms=r["p50_ms"],
                         sessions=len(self.crowd))
        self.results.add("reads_many_users_p99", "plugin", r["p99_ms"], pair)
        self.results.add("many_users_from_memory", "plugin", share, pair, **delta)

    def fig10_distinct_reads(self, pair: int) -> None:
        """Reads the gate cannot answer from one remembered URI: arguments that differ each
        time, and many distinct paths."""
        d = self.sizes.read_seconds
        study = f"/studies/{self.study_id}"
        args = self.root / "args.lua"
        args.write_text(ARGS_LUA)
        instances = self.vanilla.get(f"{study}/instances")
        paths = self.root / "paths.lua"
        paths.write_text(PATHS_LUA % ", ".join(
            json.dumps(f"/instances/{i['ID']}{suffix}") for i in instances
            for suffix in INSTANCE_SUFFIXES))
        for key, script in (("reads_args", args), ("reads_paths", paths)):
            r = wrk(self.vanilla.server.url + study, d, None, script)
            self.results.add(key, "vanilla", r["rps"], pair, p50_ms=r["p50_ms"])
            self.results.add(f"{key}_p99", "vanilla", r["p99_ms"], pair)
            before = self.gate_stats()
            r = wrk(self.plugin.server.url + study, d, self.plugin.cookie, script)
            after = self.gate_stats()
            delta = {k: after[k] - before[k] for k in after}
            delta["asked"] -= 1  # the second gate_stats() call itself
            total = delta["allowed_from_memory"] + delta["asked"]
            self.results.add(key, "plugin", r["rps"], pair, p50_ms=r["p50_ms"])
            self.results.add(f"{key}_p99", "plugin", r["p99_ms"], pair)
            self.results.add(f"{key}_from_memory", "plugin",
                             100.0 * delta["allowed_from_memory"] / max(total, 1), pair, **delta)

    def fig4_reads_while_draining(self, pair: int) -> None:
        d = self.sizes.read_seconds
        path = f"/studies/{self.study_id}"
        r = wrk(self.vanilla.server.url + path, d, None)
        self.results.add("reads_during_drain", "vanilla", r["rps"], pair, p99_ms=r["p99_ms"])

        files = self.ingest_files
        self.samba_stop()
        try:
            storescu(self.plugin, files, self.ingest_timeout(len(files)))
            before = self.nas_status()
        finally:
            self.samba_start()
        # Reads start once the worker is copying again (its reconnect backoff excluded).
        wait_until(lambda: self.nas_status()["mirrored"] > before["mirrored"], 60,
                   "the mirror to resume", interval=POLL)
        start = time.perf_counter()
        r = wrk(self.plugin.server.url + path, d, self.plugin.cookie)
        after = self.nas_status()
        drained, _ = self.wait_drained(start)
        self.results.add("reads_during_drain", "plugin", r["rps"], pair, p99_ms=r["p99_ms"],
                         backlog=before["pending"], pending_after_reads=after["pending"],
                         drain_s=drained)
        if after["pending"] == 0:
            print("    (warning: the backlog drained before the reads ended)", flush=True)
        self.reset(self.plugin)

    def fig7_login(self, pair: int) -> None:
        n = self.sizes.logins
        hashed = bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(BCRYPT_COST))
        checks = []
        for _ in range(n):
            start = time.perf_counter()
            assert bcrypt.checkpw(b"x" * 44, hashed)
            checks.append((time.perf_counter() - start) * 1000)
        self.results.add("login_p50_ms", "vanilla", statistics.median(checks), pair,
                         samples=[round(c, 2) for c in checks])
        account: Account = self.viewer_account
        times = []
        for _ in range(n):
            client = Client(self.plugin_server)  # type: ignore[arg-type]
            start = time.perf_counter()
            r = client.post("/api/login", {"username": account.username, "pin": account.pin})
            times.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200 or r.json().get("status") != "ok":
                raise RuntimeError(f"viewer login answered {r.status_code}: {r.text[:200]}")
        self.results.add("login_p50_ms", "plugin", statistics.median(times), pair,
                         samples=[round(t, 2) for t in times])

    def restart_orthancs(self) -> None:
        """Fresh processes on the same data: what the pairs left in the heaps (glibc keeps
        freed memory of its per-thread arenas) would otherwise dominate the RSS figure."""
        assert self.vanilla_server is not None and self.plugin_server is not None
        self.extra["rss_before_restart_mib"] = {
            "vanilla": rss_detail(self.vanilla.pid()), "plugin": rss_detail(self.plugin.pid()),
            "worker": rss_detail(worker_pid(self.plugin))}
        for server in (self.vanilla_server, self.plugin_server):
            server.stop()
            server.start()
        self.admin.ensure_logged_in()
        self.plugin.cookie = f"onas_session={self.admin.http.cookies.get('onas_session')}"
        wait_until(lambda: self.nas_status()["pending"] == 0, 60, "the mirror to be idle")
        self.extra["rss_after_restart_mib"] = {
            "vanilla": rss_detail(self.vanilla.pid()), "plugin": rss_detail(self.plugin.pid()),
            "worker": rss_detail(worker_pid(self.plugin))}

    def fig8_memory(self) -> None:
        files = self.memory_files
        half = len(files) // 2
        self.restart_orthancs()
        self.samba_stop()  # the NAS stays down: the plugin only queues
        rss: dict[str, dict[str, float]] = {"vanilla": {}, "plugin": {}, "worker": {}}
        for label, batch in (("half", files[:half]), ("full", files[half:])):
            for side in (self.vanilla, self.plugin):
                took = storescu(side, batch, self.ingest_timeout(len(batch)))
                detail = rss_detail(side.pid())
                value = detail["VmRSS"]
                rss[side.name][label] = value
                self.results.add(f"rss_{label}_mib", side.name, value, None,
                                 instances=side.instances() - self.fixture_count,
                                 ingest_s=took, anon=detail.get("RssAnon"),
                                 file=detail.get("RssFile"))
                if side is self.plugin:
                    worker = rss_mib(worker_pid(side))
                    rss["worker"][label] = worker
                    self.results.add(f"worker_rss_{label}_mib", "plugin", worker, None,
                                     pending=self.nas_status()["pending"])
        self.extra["rss_mib"] = rss

    # -- the run ------------------------------------------------------------------------

    def run(self) -> None:
        steps: list[tuple[str, Callable[[int], None]]] = [
            ("1+6 ingest with the mirror on", self.fig1_ingest_mirror_on),
            ("5+6 smbclient baseline", self.fig5_smbclient),
            ("2+5 ingest with the NAS down, then drain", self.fig2_ingest_nas_down_and_fig5_drain),
            ("11 drain through a 1 ms each-way proxy", self.fig11_proxy),
            ("12 scrub at its default cap", self.fig12_scrub),
            ("3 authorized reads", self.fig3_reads),
            ("4 reads while the mirror drains", self.fig4_reads_while_draining),
            ("7 login", self.fig7_login),
            ("9 reads by many users at once", self.fig9_many_users),
            ("10 reads of distinct paths and arguments", self.fig10_distinct_reads),
        ]
        self.extra["foreign"] = []
        for pair in range(1, self.pairs + 1):
            foreign = foreign_cpu()
            for title, step in steps:
                numbers = {int(n) for n in title.split()[0].split("+")}
                if self.only is not None and not numbers & self.only:
                    continue
                print(f"[pair {pair}/{self.pairs}] figure {title}", flush=True)
                step(pair)
            self.note_foreign(f"pair {pair}", foreign)
        if self.only is not None and 8 not in self.only:
            return
        print("[once] figure 8 memory", flush=True)
        foreign = foreign_cpu()
        self.fig8_memory()
        self.note_foreign("figure 8", foreign)

    def note_foreign(self, what: str, before: dict[int, tuple[str, float]]) -> None:
        spent, busiest = foreign_cpu_since(before)
        load = os.getloadavg()[0]
        self.extra["foreign"].append({"during": what, "cpu_s": spent, "busiest": busiest,
                                      "load1": load})
        if spent > FOREIGN_CPU_WARN:
            print(f"  WARNING: other processes used {spent:.1f} CPU-s during {what} "
                  f"({', '.join(busiest)}): these figures are disturbed", flush=True)


# ---- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kib / MIB, 1),
            "kernel": os.uname().release}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"
    return f"{text} {unit}".rstrip()


def print_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    m = info["machine"]
    print()
    print(f"Machine: {m['nproc']} CPU ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
          f"kernel {m['kernel']}; platform {info.get('platform')}: Orthanc "
          f"{info['versions'].get('orthanc')}, plugin {info['versions'].get('plugin')}")
    print(f"Date: {info['date']}  pairs: {info['pairs']}  smoke: {info['smoke']}  "
          f"total: {info['total_seconds']:.0f} s")
    foreign = info.get("foreign") or []
    disturbed = [f"{f['during']}: {f['cpu_s']:.0f} CPU-s" for f in foreign
                 if f["cpu_s"] > FOREIGN_CPU_WARN]
    if disturbed:
        print(f"WARNING: other processes ran during the bench ({'; '.join(disturbed)})")
    head = ("#", "figure", "vanilla", "plugin", "ratio/delta", "goal", "met?")
    lines = []
    for r in rows:
        if r["value"] is None or r["plugin_only"]:
            value = "-"
        elif r["kind"] == "ratio":
            value = f"{r['value']:.3f}"
        else:
            value = f"{r['value']:+.2f} {r['unit']}"
        goal = f"{'ratio' if r['kind'] == 'ratio' else 'delta'} {r['op']} {r['goal']:g}" \
            if r["op"] else "(info)"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        vanilla = "-" if r["plugin_only"] else _fmt(r["vanilla_median"], r["unit"])
        lines.append((str(r["number"]), r["label"], vanilla,
                      _fmt(r["plugin_median"], r["unit"]), value, goal, met))
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    sep = "-+-".join("-" * w for w in widths)
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(sep)
    for line in lines:
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    print("(medians over the runs; ratio = plugin / vanilla, delta = plugin - vanilla)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=None, help="interleaved pairs (default 5)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one pair")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the raw figures")
    parser.add_argument("--read-seconds", type=int, default=None, help="wrk -d (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--allow-threads", action="store_true", help="the plugin side with "
                        '"Python": {"AllowThreads": true} (plugin 4.3+; ignored by 4.0)')
    parser.add_argument("--only", default=None, help="figure numbers to measure, e.g. 1,5 "
                        "(development; docs/benchmark.md's table comes from a full run)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: the bench starts smbd")
    sizes = SMOKE if args.smoke else FULL
    if args.read_seconds:
        sizes = Sizes(**{**asdict(sizes), "read_seconds": args.read_seconds})
    pairs = args.pairs or (1 if args.smoke else 5)
    started = dt.datetime.now(dt.UTC)
    out = args.out or REPO / "bench-results" / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="orthanc-bench-"))
    info: dict[str, Any] = {"date": started.isoformat(timespec="seconds"),
                            "machine": machine(), "platform": PLATFORM.name, "pairs": pairs,
                            "smoke": args.smoke, "sizes": asdict(sizes), "workdir": str(root)}
    print(f"Orthanc NAS bench: {pairs} pair(s), work in {root}", flush=True)
    only = frozenset(int(n) for n in args.only.split(",")) if args.only else None
    info["only"] = sorted(only) if only else None
    info["allow_threads"] = args.allow_threads
    bench = Bench(sizes, pairs, root, only, args.allow_threads)
    ok = False
    try:
        print("[setup] data, Samba, vanilla and plugin Orthanc, logins", flush=True)
        bench.setup()
        info["setup_seconds"] = time.perf_counter() - t0
        bench.run()
        ok = True
    finally:
        bench.stop()
        info["total_seconds"] = time.perf_counter() - t0
        info.update(bench.extra)
        info.setdefault("versions", {})
        rows = bench.results.summary()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**info, "complete": ok, "figures": rows,
                                   "runs": bench.results.runs}, indent=2))
        if ok:
            print_table(rows, info)
        print(f"\nRaw figures: {out}")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif ok:
            print(f"Kept {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
