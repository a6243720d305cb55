"""Media-client worker processes driven from asyncio: start `loadtests.mediaclient`, collect its events."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from loadtests.server import ROOT, Server


@dataclass
class Event:
    at: float
    name: str
    value: float
    length: int
    error: str | None


@dataclass
class Worker:
    process: asyncio.subprocess.Process
    events: list[Event] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        try:
            t = self.ps.cpu_times()
            return float(t.user + t.system)
        except psutil.NoSuchProcess:
            return 0.0

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                e: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            self.events.append(Event(time.monotonic(), e["name"], float(e["value"]), int(e["length"] or 0),
                                     e.get("error")))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
        if self.reader is not None:
            await self.reader


async def start_worker(server: Server, *, sessions: int, hold: float, scenario: str = "individual",
                       report_every: float = 5.0, stagger: float = 0.1, cpu: int | None = None) -> Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.mediaclient", "--base", server.base, "--key", server.key,
        "--secret", server.secret, "--scenario", scenario, "--hold", str(hold), "--sessions", str(sessions),
        "--report-every", str(report_every), "--stagger", str(stagger), "--host", server.host,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    worker = Worker(process)
    worker.reader = asyncio.create_task(worker._read())
    return worker


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
