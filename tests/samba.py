"""A real Samba server on a loopback port, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from harness import free_port, wait_until

SMB_USER = "orthancnas"
SMB_PASSWORD = "Nas-Test-Password-1"


def _ensure_unix_user() -> None:
    if subprocess.run(["id", SMB_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", SMB_USER], check=True)


class SambaServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.share_dir = workdir / "share"
        self.readonly_dir = workdir / "readonly"
        self.guest_dir = workdir / "guest"  # unknown users land here as guests (unsigned)
        self.full_dir = workdir / "full"  # tests mount a tiny tmpfs here: a full share
        self.state = workdir / "state"
        self.conf = workdir / "smb.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        for d in (self.share_dir, self.readonly_dir, self.guest_dir, self.full_dir,
                  self.state):
            d.mkdir(parents=True, exist_ok=True)
        s = self.state
        self.conf.write_text(f"""[global]
smb ports = {self.port}
interfaces = lo
bind interfaces only = yes
disable netbios = yes
server min protocol = SMB2
server signing = mandatory
state directory = {s}
private dir = {s}
lock directory = {s}
cache directory = {s}
pid directory = {s}
ncalrpc dir = {s}/ncalrpc
passdb backend = tdbsam:{s}/passdb.tdb
log file = {s}/log.%m
log level = 1
load printers = no
printing = bsd
printcap name = /dev/null
disable spoolss = yes
map to guest = Bad User
guest account = nobody

[nas]
path = {self.share_dir}
read only = no
valid users = {SMB_USER}
force user = root

[readonly]
path = {self.readonly_dir}
read only = yes
valid users = {SMB_USER}
force user = root

[guest]
path = {self.guest_dir}
read only = no
guest ok = yes
force user = root

[full]
path = {self.full_dir}
read only = no
valid users = {SMB_USER}
force user = root
""")
        _ensure_unix_user()
        subprocess.run(["smbpasswd", "-c", str(self.conf), "-s", "-a", SMB_USER],
                       input=f"{SMB_PASSWORD}\n{SMB_PASSWORD}\n".encode(), check=True,
                       capture_output=True)

    def start(self) -> SambaServer:
        smbd = shutil.which("smbd") or "/usr/sbin/smbd"
        self.proc = subprocess.Popen([smbd, "--foreground", "--no-process-group", "-s",
                                      str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env={**os.environ},
                                     # smbd signals its whole process group when it stops:
                                     # that must not be the test runner's.
                                     start_new_session=True)
        wait_until(self._listening, 30, "smbd to listen")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"smbd exited with {self.proc.returncode}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # smbd forks a child per connection: make sure none keeps serving.
        subprocess.run(["pkill", "-f", f"smbd.*{self.conf}"], capture_output=True)

    def nas_config(self, share: str = "nas", **extra: object) -> dict[str, object]:
        return {"enabled": True, "type": "smb", "host": "127.0.0.1", "port": self.port,
                "share": share, "username": SMB_USER, "password": SMB_PASSWORD,
                "retry_base_seconds": 1, "retry_max_seconds": 2, **extra}
