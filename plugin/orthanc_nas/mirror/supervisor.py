"""Runs the mirror worker process next to Orthanc, feeds it, and restarts it if it dies."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

RESTART_DELAY = 2.0


class Supervisor:
    def __init__(self, command: list[str], env: dict[str, str], boot: dict[str, Any],
                 log: Callable[[str], None]) -> None:
        self._command = command
        self._env = env
        self._boot = boot
        self._log = log
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def start(self) -> None:
        with self._lock:
            self._spawn()
        threading.Thread(target=self._watch, name="orthanc-nas-mirror-watch", daemon=True).start()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, env=self._env,
                                      close_fds=True)
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(self._boot).encode() + b"\n")
        self._proc.stdin.flush()
        os.set_blocking(self._proc.stdin.fileno(), False)

    def _watch(self) -> None:
        while True:
            proc = self._proc
            if proc is None:
                return
            code = proc.wait()  # blocks without the GIL
            if self._stopping:
                return
            self._log(f"OrthancNAS: mirror worker exited with {code}; restarting")
            time.sleep(RESTART_DELAY)
            with self._lock:
                if not self._stopping:
                    self._spawn()

    def send(self, line: str) -> None:
        """Best effort: a full pipe means the worker has wake-ups queued already."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            data = line.encode() + b"\n"
            try:
                os.write(proc.stdin.fileno(), data)
            except BlockingIOError:
                if not line.startswith("wake"):
                    os.set_blocking(proc.stdin.fileno(), True)
                    os.write(proc.stdin.fileno(), data)
                    os.set_blocking(proc.stdin.fileno(), False)
            except (BrokenPipeError, ValueError, OSError):
                pass  # the watcher restarts it; the queue is durable

    def wake(self, why: str = "") -> None:
        self.send(f"wake {why}".strip())

    def configure(self, nas: dict[str, Any]) -> None:
        self._boot["nas"] = nas
        self.send("config " + json.dumps(nas))

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # end of input: the worker finishes its item and exits
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None
