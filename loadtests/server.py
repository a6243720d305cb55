"""A real `confidant` server subprocess on loopback for load runs, benchmarks and the locust smoke test."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port(kind: int, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    host: str
    http_port: int
    udp_port: int
    key: str
    secret: str

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(host: str = "127.0.0.1", *, log: Path | None = None, env: dict[str, str] | None = None,
          cpu: int | None = None) -> Server:
    """Start and wait for /readyz. `cpu` pins the server to one core (capacity runs)."""
    http_port, udp_port = free_port(socket.SOCK_STREAM, host), free_port(socket.SOCK_DGRAM, host)
    key, secret = "load-key", "load-secret-" + secrets.token_hex(16)
    full_env = {
        **os.environ,
        "CONFIDANT_HTTP_HOST": host, "CONFIDANT_HTTP_PORT": str(http_port),
        "CONFIDANT_UDP_HOST": host, "CONFIDANT_UDP_PORT": str(udp_port), "CONFIDANT_ANNOUNCED_IPS": host,
        "CONFIDANT_API_KEY": key, "CONFIDANT_API_SECRET": secret, "CONFIDANT_LOG_LEVEL": "warning",
        "CONFIDANT_MAX_OBSERVERS": "8", **(env or {}),
    }
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    # CONFIDANT_SERVER_ROOT runs the server from another source tree (a benchmark against a snapshot).
    cwd = os.environ.get("CONFIDANT_SERVER_ROOT") or ROOT
    process = subprocess.Popen([sys.executable, "-m", "signalling"], cwd=cwd, env=full_env, stdout=out, stderr=out)
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    server = Server(process, host, http_port, udp_port, key, secret)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-4000:] if log is not None else ""
            raise RuntimeError(f"confidant exited with {process.returncode}: {tail}")
        try:
            with urllib.request.urlopen(server.base + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("confidant did not become ready in 20 s")
