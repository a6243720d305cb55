"""Load-test media client: whole care sessions of replay participants, reporting one JSON event per line.

Each session creates its room and mints its tokens through the REST API, then runs every participant of
the room in this process: WebSocket join, ICE/DTLS-SRTP on our own client transport, publishing
pre-encoded VP8 + Opus in real time (no encoding) and counting what arrives (no decoding). Locust runs
this as a subprocess (gevent and asyncio do not mix) and turns each line into a request event;
`capacity.py` and `clientcost.py` run many sessions per process.

    python -m loadtests.mediaclient --base http://127.0.0.1:8080 --key K --secret S \\
        --scenario couples --hold 20 [--sessions 5] [--report-every 5]

Event lines: {"name": ..., "value": ..., "length": ..., "error": null | "..."}. `value` is milliseconds for
`*_ms` names and the named unit otherwise (kbps, percent, count); `length` is a byte or packet count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from client.media import Clip, load_clip
from client.replay import ReplayParticipant, ReplaySession

FIRST_MEDIA_TIMEOUT = 10.0
# A churning client stays this long (uniformly). It always stays the minimum, even past the session's hold:
# a visit cut to nothing at the end of the hold measured an empty window and read as "no media".
CHURN_STAY_S = (2.0, 5.0)
# The last window of a participant, when it leaves or the session ends, is reported only if at least this long.
MIN_FINAL_WINDOW_S = 0.5
Emit = Callable[..., None]

# Scenario -> (room kind, roles in joining order). The therapist joins first, as in a real session.
SCENARIOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "individual": ("individual", ("therapist", "client")),
    "couples": ("couples", ("therapist", "client", "client")),
    "family": ("family", ("therapist", "client", "client", "client", "client")),
    "churn": ("couples", ("therapist", "client")),  # plus one client slot that joins and leaves continually
}


def emit_json(name: str, value: float, length: int = 0, error: str | None = None) -> None:
    print(json.dumps({"name": name, "value": round(value, 3), "length": length, "error": error}), flush=True)


class LoadParticipant(ReplaySession):
    """A replay session that can pause between join and publish (waiting room)."""

    async def join_only(self) -> dict[str, Any]:
        await self.signalling.connect()
        self.joined = await self.signalling.join(self._token)
        self._offers = asyncio.create_task(self._answer_offers())
        return self.joined

    async def publish_now(self, timeout: float = 10.0) -> None:
        reply = await self.signalling.publish(await self.media.publish_offer())
        await self.media.publish_answered(str(reply["sdp"]), timeout=timeout)

    @property
    def participant(self) -> ReplayParticipant:
        return self.media


def describe_links(p: LoadParticipant) -> str:
    """Where a participant's media stands, for a failure message: each link's state, offers answered."""
    states = []
    for link in (p.media.publish_link, p.media.subscribe_link):
        state = "unopened" if link.transport is None else link.transport.state.name.lower()
        states.append(f"{link.name} {state}")
    closed = f", closed {p.media.closed_reason}" if p.media.closed_reason else ""
    return f"{', '.join(states)}, {p.offers_answered} offers answered{closed}"


def is_waiting(joined: dict[str, Any]) -> bool:
    participant = joined.get("participant")
    return isinstance(participant, dict) and participant.get("state") == "waiting"


async def admit(therapist: LoadParticipant, client: LoadParticipant, participant_id: str,
                timeout: float = 10.0) -> None:
    """The therapist admits a waiting client (docs/protocol.md, waiting room); returns once the client has
    been told. Polls the client's queued events: its offer task reads the same queue."""
    await therapist.signalling.request({"type": "admit", "participant_id": participant_id})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.get("type") == "admitted" for e in client.signalling.pending_events()):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("not admitted within 10 s")


@dataclass
class Window:
    """Counters of a participant at the start of a measurement window."""

    at: float
    packets: int
    bytes: int
    lost: int
    freezes: int


def snapshot(p: LoadParticipant) -> Window:
    t = p.media.totals()
    return Window(time.monotonic(), t["packets"], t["bytes"], t["lost"], t["freezes"])


@dataclass
class Rest:
    base: str
    key: str
    secret: str
    http: aiohttp.ClientSession

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.base + path, json=body,
                                  headers={"Authorization": f"Bearer {self.key}:{self.secret}"}) as r:
            data: dict[str, Any] = await r.json()
            if r.status >= 300:
                raise RuntimeError(f"{path}: {r.status} {data}")
            return data


@dataclass
class Session:
    rest: Rest
    clip: Clip
    host: str
    emit: Emit
    kind: str
    room_id: str = ""
    participants: list[LoadParticipant] = field(default_factory=list)
    windows: dict[int, Window] = field(default_factory=dict)

    async def create(self) -> None:
        t0 = time.monotonic()
        room = await self.rest.call("/v1/rooms", {"kind": self.kind})
        self.room_id = str(room["id"])
        self.emit("create_room_ms", (time.monotonic() - t0) * 1000)

    async def join(self, role: str, pid: str) -> LoadParticipant | None:
        """One participant end to end: token over REST, join, (admission), publish, first media."""
        try:
            t0 = time.monotonic()
            token = await self.rest.call(f"/v1/rooms/{self.room_id}/tokens",
                                         {"participant_id": pid, "role": role, "display_name": pid, "ttl": 600})
            self.emit("token_ms", (time.monotonic() - t0) * 1000)
            ws = self.rest.base.replace("http", "ws", 1) + "/ws"
            p = LoadParticipant(ws, str(token["token"]), self.clip, host=self.host)
            t1 = time.monotonic()
            joined = await p.join_only()
            self.emit("join_ms", (time.monotonic() - t1) * 1000)
            if is_waiting(joined):
                if not self.participants:
                    raise RuntimeError("waiting with no therapist to admit")
                t2 = time.monotonic()
                await admit(self.participants[0], p, pid)
                self.emit("admit_ms", (time.monotonic() - t2) * 1000)
            await p.publish_now()
            self.participants.append(p)
        except Exception as exc:  # noqa: BLE001 - one participant failing is an event, not the end of the run
            self.emit("join_ms", 0, error=f"{type(exc).__name__}: {exc}")
            return None
        return p

    async def first_media(self, p: LoadParticipant, t0: float) -> bool:
        deadline = t0 + FIRST_MEDIA_TIMEOUT
        while time.monotonic() < deadline:
            if any(c.packets for c in p.media.received.values()):
                self.emit("first_media_ms", (time.monotonic() - t0) * 1000)
                self.windows[id(p)] = snapshot(p)
                return True
            await asyncio.sleep(0.01)
        self.emit("first_media_ms", FIRST_MEDIA_TIMEOUT * 1000, error=f"no media within 10 s ({describe_links(p)})")
        return False

    async def enter(self, role: str, pid: str) -> LoadParticipant | None:
        t0 = time.monotonic()
        p = await self.join(role, pid)
        if p is not None and len(self.participants) > 1:
            # The first participant has nobody to hear until the second publishes.
            waits = [self.first_media(q, t0 if q is p else time.monotonic())
                     for q in self.participants if id(q) not in self.windows]
            await asyncio.gather(*waits)
        return p

    def report(self, p: LoadParticipant, *, final: bool) -> None:
        """Bitrate, loss, jitter and freezes of `p` since its last window."""
        start = self.windows.get(id(p))
        if start is None:
            return
        end = snapshot(p)
        if final and end.at - start.at < MIN_FINAL_WINDOW_S:
            return  # a periodic report just covered this; a window of nothing would read as "no media"
        seconds = max(1e-3, end.at - start.at)
        packets, lost = end.packets - start.packets, end.lost - start.lost
        self.emit("received_kbps", (end.bytes - start.bytes) * 8 / seconds / 1000, end.bytes - start.bytes,
                  error="no media in the window" if packets == 0 else None)
        self.emit("loss_percent", 100 * lost / max(1, packets + lost), lost)
        self.emit("jitter_ms", 1000 * max((c.jitter_s for c in p.media.received.values()), default=0.0))
        self.emit("freezes", end.freezes - start.freezes,
                  int(1000 * max((c.max_gap for c in p.media.received.values() if c.kind == "video"), default=0)))
        self.windows[id(p)] = end

    async def leave(self, p: LoadParticipant) -> None:
        self.report(p, final=True)
        self.windows.pop(id(p), None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.close(), 5)
        if p in self.participants:
            self.participants.remove(p)

    async def close(self) -> None:
        for p in list(self.participants):
            await self.leave(p)
        with contextlib.suppress(Exception):
            await self.rest.call(f"/v1/rooms/{self.room_id}/end", {})


async def run_session(rest: Rest, clip: Clip, *, scenario: str, hold: float, host: str, emit: Emit,
                      report_every: float, rng: random.Random) -> None:
    kind, roles = SCENARIOS[scenario]
    session = Session(rest, clip, host, emit, kind)
    try:
        await session.create()
        for i, role in enumerate(roles):
            await session.enter(role, f"{role[0]}{i}")
        loop = asyncio.get_running_loop()
        end = loop.time() + hold
        next_report = loop.time() + report_every
        churner: LoadParticipant | None = None
        n = 0
        while loop.time() < end:
            if scenario == "churn":
                if end - loop.time() < CHURN_STAY_S[0]:  # no time for another full visit
                    await asyncio.sleep(max(0.0, end - loop.time()))
                    continue
                n += 1
                churner = await session.enter("client", f"churn{n}")
                await asyncio.sleep(rng.uniform(*CHURN_STAY_S))
                if churner is not None:
                    await session.leave(churner)
            else:
                await asyncio.sleep(max(0.0, min(end, next_report) - loop.time()))
            if loop.time() >= next_report:
                next_report = loop.time() + report_every
                for p in list(session.participants):
                    session.report(p, final=False)
    finally:
        await session.close()


class LagMeter:
    """How late this process's own timers fire: if the client falls behind, its numbers mean nothing."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.05
            await asyncio.sleep(0.05)
            self.samples.append(loop.time() - due)

    def p99(self) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def main_async(args: argparse.Namespace) -> None:
    clip = load_clip()
    rng = random.Random()
    lag = LagMeter()
    lag_task = asyncio.create_task(lag.run())
    async with aiohttp.ClientSession() as http:
        rest = Rest(args.base, args.key, args.secret, http)
        tasks: list[asyncio.Task[None]] = []
        # SIGTERM (locust stopping, a benchmark ending) ends the sessions properly: final reports, leave.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: [t.cancel() for t in tasks])
        for _ in range(args.sessions):
            tasks.append(asyncio.create_task(run_session(
                rest, clip, scenario=args.scenario, hold=args.hold, host=args.host, emit=emit_json,
                report_every=args.report_every, rng=rng)))
            await asyncio.sleep(args.stagger)
        await asyncio.gather(*tasks, return_exceptions=True)
    lag_task.cancel()
    emit_json("client_loop_lag_p99_ms", lag.p99() * 1000, len(lag.samples))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="http://host:port of the confidant server")
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="individual")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each session lasts once everyone is in")
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sessions in this process")
    parser.add_argument("--stagger", type=float, default=0.2, help="seconds between session starts")
    parser.add_argument("--report-every", type=float, default=math.inf, help="quality events every N seconds")
    parser.add_argument("--host", default="127.0.0.1", help="local address for media sockets")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
