"""Locust scenarios for many small care sessions: `individual`, `couples`, `family` and `churn`.

Each locust user runs one whole session at a time in a `loadtests.mediaclient` subprocess (locust's gevent
and our asyncio media stack do not share a process): room and tokens over REST, waiting room admission by
the therapist, ICE/DTLS-SRTP, replayed VP8 + Opus both ways. Every JSON line the client prints becomes a
request event (type `webrtc`): `token_ms`, `join_ms`, `admit_ms`, `first_media_ms` (join sent to first
packet received; a failure when none arrives in 10 s), then per participant `received_kbps`,
`loss_percent`, `jitter_ms` and `freezes` (gaps over 500 ms; content size = longest gap in ms). For the
non-time rows the "response time" columns carry the named unit.

    CONFIDANT_KEY=... CONFIDANT_SECRET=... locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \\
        --headless -u 10 -r 2 -t 60s IndividualSession CouplesSession FamilySession ChurnSession

CONFIDANT_HOLD (seconds a session lasts once everyone is in, default 20).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
from locust import User, between, events, task
from locust.env import Environment

ROOT = Path(__file__).resolve().parents[1]


def fire(environment: Environment, event: dict[str, Any]) -> None:
    error = event.get("error")
    environment.events.request.fire(  # type: ignore[no-untyped-call]
        request_type="webrtc", name=str(event["name"]), response_time=float(event["value"]),
        response_length=int(event.get("length") or 0), exception=RuntimeError(error) if error else None,
        context={})


class SessionUser(User):
    abstract = True
    scenario = "individual"
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.proc: gevent.subprocess.Popen[str] | None = None

    def on_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except gevent.subprocess.TimeoutExpired:
                self.proc.kill()

    @task
    def session(self) -> None:
        command = [sys.executable, "-m", "loadtests.mediaclient", "--base", str(self.host),
                   "--key", os.environ["CONFIDANT_KEY"], "--secret", os.environ["CONFIDANT_SECRET"],
                   "--scenario", self.scenario, "--hold", os.environ.get("CONFIDANT_HOLD", "20"),
                   "--report-every", os.environ.get("CONFIDANT_REPORT_EVERY", "inf")]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = proc = gevent.subprocess.Popen(command, stdout=gevent.subprocess.PIPE, text=True, cwd=ROOT,
                                                   env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            fire(self.environment, event)
        if proc.wait() != 0:
            fire(self.environment, {"name": "media_client_exit", "value": 0,
                                    "error": f"media client exited with {proc.returncode}"})
        self.proc = None


class IndividualSession(SessionUser):
    scenario = "individual"


class CouplesSession(SessionUser):
    scenario = "couples"


class FamilySession(SessionUser):
    scenario = "family"


class ChurnSession(SessionUser):
    scenario = "churn"


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _fail_on_errors(environment: Environment, **_: Any) -> None:
    """A smoke run fails (exit code 1) if any request event failed."""
    if environment.stats.total.num_failures > 0:
        environment.process_exit_code = 1
