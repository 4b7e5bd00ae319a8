"""The production setup, for real: what scripts/install-service writes (systemd unit, nginx site,
self-signed certificate, fail2ban filter), Orthanc run with the unit's command line as Debian's
unprivileged ``orthanc`` user, Debian's nginx in front of it on free ports; and scripts/start
bringing Orthanc back after ``kill -9`` with DICOM over TLS."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from dicom_factory import ct_instance, write_series
from harness import (
    ADMIN_PIN,
    REPO,
    Client,
    OrthancServer,
    admin_account,
    free_port,
    render_config,
    wait_until,
)
from orthanc_nas.web import SECURITY_HEADERS

NGINX_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
             "script-src 'self' 'unsafe-hashes' "
             "'sha256-Sii8hGRfSHoJ5vCqzknXRD7Kn5fF/c8F8MpnZ8aUqFc='; object-src 'none'; "
             "base-uri 'self'; frame-ancestors 'none'; form-action 'self'")
PLUGIN_CSP = dict(SECURITY_HEADERS)["Content-Security-Policy"]
BIG = 200 * 1024 * 1024


@dataclass
class Deployment:
    root: Path
    https_port: int
    http_port: int
    orthanc_port: int
    dicom_port: int
    unit: dict[str, str]
    env: dict[str, str]
    orthanc: subprocess.Popen[bytes]
    nginx: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def cert(self) -> Path:
        return self.root / "etc/orthanc-nas/tls/orthanc-nas.crt"

    @property
    def orthanc_log(self) -> Path:
        return self.root / "orthanc.log"

    # What harness.Client needs of a server: the proxy's address and the time.
    def now(self) -> float:
        return time.time()

    def advance_clock(self, seconds: float) -> None:
        raise AssertionError("the service runs on the real clock")

    def client(self) -> Client:
        client = Client(self)  # type: ignore[arg-type]
        client.http.verify = str(self.cert)
        client.http.trust_env = False  # else REQUESTS_CA_BUNDLE outranks verify
        return client


def read_unit(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def read_env_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile, as the installer writes it (KEY=value, KEY='value')."""
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value[1:-1] if value[:1] == "'" == value[-1:] else value
    return env


def as_orthanc_user(command: list[str]) -> list[str]:
    """The unit's User=orthanc, Group=orthanc and NoNewPrivileges=yes."""
    return ["setpriv", "--reuid=orthanc", "--regid=orthanc", "--init-groups", "--no-new-privs",
            "--", *command]


def start_nginx(root: Path) -> subprocess.Popen[bytes]:
    """Debian's nginx as a foreground process with the installed site, like Debian's
    nginx.conf includes it (whose http-level ssl_protocols still allows TLS 1.1)."""
    temp = root / "nginx-temp"
    temp.mkdir()
    subprocess.run(["chown", "www-data:www-data", str(temp)], check=True)
    conf = root / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
user www-data;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    gzip on;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {root}/etc/nginx/sites-enabled/*;
}}
""")
    test = subprocess.run(["nginx", "-t", "-e", str(root / "nginx-error.log"), "-c", str(conf)],
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    return subprocess.Popen(["nginx", "-e", str(root / "nginx-error.log"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def answers(url: str, verify: str | bool = False) -> bool:
    try:
        return requests.get(url, timeout=2, verify=verify).status_code in (200, 503)
    except requests.ConnectionError:
        return False


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    # Not pytest's tmp_path: that lives in a folder only root may enter.
    root = Path(tempfile.mkdtemp(prefix="orthanc-nas-prod-"))
    root.chmod(0o755)
    ports = [free_port() for _ in range(4)]
    https_port, http_port, orthanc_port, dicom_port = ports
    subprocess.run([str(REPO / "scripts/install-service"), "--root", str(root),
                    "--server-name", "localhost", "--https-port", str(https_port),
                    "--http-port", str(http_port), "--orthanc-port", str(orthanc_port),
                    "--dicom-port", str(dicom_port), "--data-dir", str(root / "data")],
                   check=True, capture_output=True, env={**os.environ})
    unit = read_unit(root / "etc/systemd/system/orthanc-nas.service")
    env = read_env_file(Path(unit["EnvironmentFile"]))
    run_env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **env,
               "ORTHANC_NAS_ADMIN_PIN": ADMIN_PIN}
    log = (root / "orthanc.log").open("ab")
    orthanc = subprocess.Popen(as_orthanc_user(shlex.split(unit["ExecStart"])), env=run_env,
                               stdout=log, stderr=subprocess.STDOUT, cwd="/", umask=0o077)
    nginx = start_nginx(root)
    dep = Deployment(root, https_port, http_port, orthanc_port, dicom_port, unit, run_env,
                     orthanc, nginx)
    try:
        wait_until(lambda: orthanc.poll() is not None or answers(
            f"http://127.0.0.1:{orthanc_port}/api/health"), 90, "Orthanc as orthanc")
        assert orthanc.poll() is None, (root / "orthanc.log").read_text()[-3000:]
        wait_until(lambda: answers(dep.url + "/api/health", str(dep.cert)), 30, "nginx")
        yield dep
    finally:
        for proc in (nginx, orthanc):
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def admin(deployment: Deployment) -> Client:
    client = deployment.client()
    client.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    return client


def header_values(response: requests.Response, name: str) -> list[str]:
    return list(response.raw.headers.getlist(name))


def assert_security_headers(response: requests.Response, csp: str) -> None:
    for name, value in (("Strict-Transport-Security", "max-age=63072000"),
                        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                        ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
                        ("Content-Security-Policy", csp)):
        assert header_values(response, name) == [value], (response.url, name,
                                                          header_values(response, name))


# ---- the installer's files -------------------------------------------------------------


def test_the_unit_verifies_and_runs_orthanc_unprivileged_with_hardening(
        deployment: Deployment) -> None:
    unit_path = deployment.root / "etc/systemd/system/orthanc-nas.service"
    check = subprocess.run(["systemd-analyze", "verify", str(unit_path)], capture_output=True,
                           text=True)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")
    unit = deployment.unit
    assert (unit["User"], unit["Restart"], unit["NoNewPrivileges"], unit["ProtectSystem"],
            unit["PrivateTmp"], unit["ProtectHome"]) == ("orthanc", "always", "yes", "strict",
                                                         "yes", "yes")
    assert unit["ReadWritePaths"] == str(deployment.root / "data")
    assert deployment.env["ORTHANC_NAS_REMOTE_ACCESS"] == "false"


def test_orthanc_runs_as_orthanc_and_writes_only_its_data_folder(
        deployment: Deployment) -> None:
    status = Path(f"/proc/{deployment.orthanc.pid}/status").read_text()
    orthanc_uid = int(subprocess.check_output(["id", "-u", "orthanc"]))
    assert re.search(rf"^Uid:\s+{orthanc_uid}\s+{orthanc_uid}\s", status, re.M), status
    data = deployment.root / "data"
    key = data / "orthanc-nas.key"
    for path in (data, key, data / "orthanc-nas.sqlite", data / "orthanc-storage"):
        assert path.stat().st_uid == orthanc_uid, path
    assert data.stat().st_mode & 0o077 == 0 and key.stat().st_mode & 0o077 == 0
    # The same command line pointed at a storage folder outside the data folder: refused.
    outside = deployment.root / "outside"
    outside.mkdir(mode=0o755)
    config = render_config((REPO / "orthanc.json").read_text(), deployment.env)
    config.update(StorageDirectory=str(outside / "storage"), IndexDirectory=str(outside),
                  HttpPort=free_port(), DicomPort=free_port())
    bad = deployment.root / "outside.json"
    bad.write_text(json.dumps(config))
    bad.chmod(0o644)
    run = subprocess.run(as_orthanc_user(["/usr/sbin/Orthanc", str(bad)]), env=deployment.env,
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert run.returncode != 0
    assert "Unable to open the database" in run.stderr, run.stderr[-2000:]
    assert list(outside.iterdir()) == []


def test_orthanc_http_answers_loopback_only(deployment: Deployment) -> None:
    """RemoteAccessAllowed false: Orthanc 1.10.1 has no bind address, it refuses others."""
    own = next((ip for ip in subprocess.check_output(["hostname", "-I"], text=True).split()
                if "." in ip and not ip.startswith("127.")), None)
    if own is None:
        pytest.skip("no non-loopback IPv4 address to come from")
    health = f"http://{{}}:{deployment.orthanc_port}/api/health"
    assert requests.get(health.format("127.0.0.1"), timeout=5).status_code == 200
    assert requests.get(health.format(own), timeout=5).status_code == 401  # Orthanc's refusal


# ---- nginx in front ----------------------------------------------------------------------


def tls_handshake(port: int, version: ssl.TLSVersion) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        return str(tls.version())


def test_tls_1_2_and_1_3_only_and_http_redirects(deployment: Deployment) -> None:
    assert tls_handshake(deployment.https_port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert tls_handshake(deployment.https_port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        tls_handshake(deployment.https_port, ssl.TLSVersion.TLSv1_1)
    r = requests.get(f"http://127.0.0.1:{deployment.http_port}/app/explorer.html?x=1",
                     headers={"Host": "localhost"}, allow_redirects=False, timeout=5)
    assert r.status_code == 301
    assert r.headers["Location"] == f"{deployment.url}/app/explorer.html?x=1"


def test_login_through_the_proxy_sets_a_secure_cookie(deployment: Deployment) -> None:
    client = deployment.client()
    r = client.post("/api/login", {"username": "admin", "pin": "not-the-pin-0000"})
    assert r.status_code == 401
    assert_security_headers(r, PLUGIN_CSP)
    admin = deployment.client()
    r = admin.post("/api/login", {"username": "admin", "pin": ADMIN_PIN})
    cookies = header_values(r, "Set-Cookie")
    assert any(c.startswith("onas_session=") and "; Secure" in c and "HttpOnly" in c
               for c in cookies), cookies


def test_headers_on_plugin_pages_orthanc_pages_rest_and_files(deployment: Deployment,
                                                               admin: Client,
                                                               tmp_path: Path) -> None:
    [path] = write_series(tmp_path, 1)
    r = admin.request("POST", "/instances", data=path.read_bytes(),
                      headers={"Content-Type": "application/dicom"})
    assert r.status_code == 200, r.text
    instance = r.json()["ID"]
    assert_security_headers(admin.get("/ui/login"), PLUGIN_CSP)
    for uri in ("/app/explorer.html", "/patients", f"/instances/{instance}/file",
                "/app/libs/jquery.min.js"):
        r = admin.get(uri)
        assert r.status_code == 200, (uri, r.status_code)
        assert_security_headers(r, NGINX_CSP)
    assert header_values(admin.get(f"/instances/{instance}/file"), "Content-Type") == [
        "application/dicom"]
    # Errors too: nginx's own (body too large) and the plugin's.
    r = admin.request("POST", "/api/images/search", data=b"x" * (2 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["error"]
    assert_security_headers(r, NGINX_CSP)


def source_request(deployment: Deployment, source: str, path: str, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A request through the proxy sent from ``source`` (another loopback address)."""
    ctx = ssl.create_default_context(cafile=str(deployment.cert))
    conn = http.client.HTTPSConnection("localhost", deployment.https_port, context=ctx,
                                       source_address=(source, 0), timeout=30)
    try:
        conn.request("POST", path, json.dumps(body).encode(),
                     {"Content-Type": "application/json", "Origin": deployment.url,
                      **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_the_plugin_sees_the_client_address_and_fail2ban_reads_it(
        deployment: Deployment, admin: Client) -> None:
    status, _ = source_request(deployment, "127.0.0.2", "/api/login",
                               {"username": "mallory", "pin": "guess-guess-1"},
                               {"X-Forwarded-For": "203.0.113.9"})  # a claim, ignored
    assert status == 401
    r = admin.get("/api/audit", params={"user": "mallory"})
    assert r.status_code == 200, r.text
    assert [row["ip"] for row in r.json()["items"]] == ["127.0.0.2"]
    wait_until(lambda: "failure from 127.0.0.2" in deployment.orthanc_log.read_text(), 10,
               "the log line")
    check = subprocess.run(["fail2ban-regex", "--print-all-matched", str(deployment.orthanc_log),
                            str(deployment.root / "etc/fail2ban/filter.d/orthanc-nas.conf")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    logged = deployment.orthanc_log.read_text().count("OrthancNAS: authentication failure")
    matched = int(re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched", check.stdout,
                            re.M).group(1))  # type: ignore[union-attr]
    assert matched == logged >= 2
    assert "<HOST> 127.0.0.2" in check.stdout or "127.0.0.2" in check.stdout
    assert "203.0.113.9" not in check.stdout


def test_the_login_rate_limit_answers_429_with_json(deployment: Deployment) -> None:
    statuses = []
    for _ in range(14):
        status, body = source_request(deployment, "127.0.0.3", "/api/login",
                                      {"username": "nobody", "pin": "guess-guess-2"})
        statuses.append(status)
    assert statuses[:11] == [401] * 11  # the burst reaches Orthanc
    assert statuses[11:] == [429] * 3
    assert body == {"error": "too many attempts from this address; try again later"}


def rss_peak_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def test_a_200_mb_instance_streams_up_and_down(deployment: Deployment, admin: Client,
                                               tmp_path: Path) -> None:
    ds = ct_instance(patient_id="BIG-1", size=16)
    side = int((BIG // 2) ** 0.5)
    ds.Rows = ds.Columns = side
    ds.PixelData = bytes(range(256)) * (side * side * 2 // 256) + bytes(side * side * 2 % 256)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    size = path.stat().st_size
    assert size >= BIG
    digest = hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 (a checksum)
    with path.open("rb") as body:
        r = admin.request("POST", "/instances", data=body, timeout=300,
                          headers={"Content-Type": "application/dicom"})
    assert r.status_code == 200, r.text
    got, md5 = 0, hashlib.md5()  # noqa: S324
    with admin.get(f"/instances/{r.json()['ID']}/file", stream=True, timeout=300) as down:
        assert down.status_code == 200
        for chunk in down.iter_content(1 << 20):
            got += len(chunk)
            md5.update(chunk)
    assert (got, md5.hexdigest()) == (size, digest)
    workers = subprocess.check_output(["pgrep", "-P", str(deployment.nginx.pid)], text=True)
    peaks = [rss_peak_kib(int(pid)) for pid in workers.split()]
    print(f"nginx worker peak RSS: {peaks} KiB for a {size / 1e6:.0f} MB upload and download")
    assert max(peaks) < 64 * 1024
    errors = (deployment.root / "nginx-error.log").read_text()
    assert "buffered to a temporary file" not in errors, errors[-2000:]


# ---- scripts/start: brought back after kill -9, DICOM over TLS ----------------------------


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


@dataclass
class Started:
    server: OrthancServer
    proc: subprocess.Popen[bytes]
    client_key: Path
    client_cert: Path
    server_cert: Path

    def pid(self) -> int:
        return int((self.server.data_dir / "orthanc.pid").read_text())


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    work = tmp_path_factory.mktemp("start")
    server_key, server_cert = make_cert(work, "localhost")
    client_key, client_cert = make_cert(work, "modality")
    server = OrthancServer(work, {
        "OrthancNAS": {"auth": {"bcrypt_cost": 4}},
        "DicomModalities": {"storescu": ["STORESCU", "127.0.0.1", 11112]},
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(server_cert),
        "DicomTlsPrivateKey": str(server_key), "DicomTlsTrustedCertificates": str(client_cert)})
    server.data_dir.mkdir(parents=True)
    server.config_path.write_text(json.dumps(server.config))
    log = server.log_path.open("ab")
    proc = subprocess.Popen([str(REPO / "scripts/start")], stdout=log, stderr=subprocess.STDOUT,
                            env={**server.env, "ORTHANC_NAS_CONFIG": str(server.config_path)},
                            start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or answers(server.url + "/api/health"), 90,
                   "scripts/start")
        assert proc.poll() is None, server.log_tail()
        yield Started(server, proc, client_key, client_cert, server_cert)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def storescu_tls(started: Started, files: list[Path], tls: bool = True) -> (
        subprocess.CompletedProcess[str]):
    options = ["+tls", str(started.client_key), str(started.client_cert),
               "+cf", str(started.server_cert)] if tls else []
    return subprocess.run(["/usr/bin/storescu", *options, "-aet", "STORESCU", "-aec", "ORTHANC",
                           "127.0.0.1", str(started.server.dicom_port), *map(str, files)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TCP_NODELAY": "1"})


def test_start_brings_orthanc_back_after_kill_9_without_losing_stored_instances(
        started: Started, tmp_path: Path) -> None:
    files = write_series(tmp_path, 20, patient_id="KILL-9")
    plain = storescu_tls(started, files[:1], tls=False)
    assert plain.returncode != 0  # the DICOM port speaks TLS only
    sent = storescu_tls(started, files)
    assert sent.returncode == 0, sent.stderr
    old = started.pid()
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: started.pid() != old and answers(started.server.url + "/api/health"),
               10, "Orthanc back within 10 s")
    print(f"Orthanc answered again {time.monotonic() - killed_at:.1f} s after kill -9")
    admin = started.server.client()
    admin.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    r = admin.post("/tools/find", {"Level": "Instance", "Query": {"PatientID": "KILL-9"}})
    assert r.status_code == 200, r.text
    assert len(r.json()) == len(files)


def test_orthanc_explorer_works_through_the_proxy_in_chromium(deployment: Deployment,
                                                               admin: Client,
                                                               tmp_path: Path) -> None:
    """The nginx CSP must leave Orthanc Explorer whole: its pages and upload form load and
    run with no Content Security Policy violation, through TLS, after the plugin's login."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import browser_login

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                 "--ignore-certificate-errors", "--disable-background-networking",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        assert admin.account is not None
        browser_login(driver, deployment.url + "/app/explorer.html", admin, admin.account)
        driver.get(deployment.url + "/app/explorer.html#lookup")
        WebDriverWait(driver, 30).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "#lookup")))
        driver.get(deployment.url + "/app/explorer.html#upload")
        WebDriverWait(driver, 30).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "#upload")))
        driver.save_screenshot(str(tmp_path / "explorer-through-nginx.png"))
        shots = os.environ.get("ORTHANC_NAS_SCREENSHOTS")
        if shots:
            driver.save_screenshot(str(Path(shots) / "explorer-through-nginx.png"))
        violations = [entry["message"] for entry in driver.get_log("browser")
                      if "Content Security Policy" in entry["message"]
                      or "Refused to" in entry["message"]]
        assert violations == []
        # Explorer's own script ran: its patient list asked the (guarded) REST API.
        assert driver.execute_script("return typeof jQuery") == "function"
    finally:
        driver.quit()
