"""Server CPU per forwarded packet, with one publisher and N subscribers in one room.

A real `confidant` server runs in a subprocess (pinned to one core when the machine has two or more);
one synthetic publisher replays pre-encoded VP8 (640x480, 30 fps, 1 Mbps by default: the load DESIGN.md
section 1 measured aiortc's relays under) + Opus through our client-role transport, and N subscribers
receive without decoding. After a warm-up, the server's CPU time (user + system: the scheduler's runtime
in ns from /proc, as floor.py reads it) over the window is divided by the packets it forwarded and
received in that window (from its /metrics).

    python benchmarks/forwarding.py                 # N = 1, 4, 10; a table
    python benchmarks/forwarding.py --json -n 10    # one JSON object per N
    python benchmarks/forwarding.py --video-bitrate 500000   # a lighter publisher (fixed costs weigh more)
    python benchmarks/forwarding.py --floor         # each N also as a ratio to floor.py's CPython floor,
                                                    # measured right after it under the same traffic

The ratio is the figure to compare across machines and runs: on a small VM the absolute cost per packet
moves by up to 2x with how busy the host is, and the floor moves with it.

Runs on loopback: our own client transport needs no interface address, so no root is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass

import aiohttp
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import floor
from client.media import load_clip
from client.replay import ReplaySession
from loadtests.server import start as start_server
from signalling.tokens import mint_token

HOST = "127.0.0.1"


@dataclass
class Result:
    subscribers: int
    rooms: int
    seconds: float
    ingress_pps: float
    egress_pps: float
    server_cpu_fraction: float  # of one core
    us_per_egress_packet: float
    us_per_ingress_packet: float
    subscriber_loss_fraction: float
    rss_mb: float
    floor_us_per_egress_packet: float | None = None  # floor.py's py-srtp at the same N, with --floor
    ratio_to_floor: float | None = None


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            m = re.match(rf"{name}(?:_total)?(?:\{{[^}}]*\}})?\s+([0-9.e+-]+)$", line)
            if m:
                total += float(m.group(1))
    return total


async def scrape(http: aiohttp.ClientSession, base: str) -> tuple[float, float]:
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    return metric_sum(text, "confidant_packets_forwarded"), metric_sum(text, "confidant_packets_received")


async def run_one(n: int, *, warmup: float, seconds: float, max_observers: int, rooms: int = 1,
                  video_bitrate: int = 1_000_000) -> Result:
    pin = (os.cpu_count() or 1) >= 2
    server = start_server(HOST, env={"CONFIDANT_MAX_OBSERVERS": str(max_observers)}, cpu=1 if pin else None)
    sessions: list[ReplaySession] = []
    try:
        pid = server.process.pid
        if pin:
            os.sched_setaffinity(0, {0})
        base = server.base
        auth = {"Authorization": f"Bearer {server.key}:{server.secret}"}
        clip = load_clip(video_bitrate=video_bitrate)
        async with aiohttp.ClientSession(headers=auth) as http:
            ws = base.replace("http", "ws", 1) + "/ws"
            subscribers: list[ReplaySession] = []
            for _ in range(rooms):
                async with http.post(f"{base}/v1/rooms", json={"kind": "family", "max_observers": max(0, n - 6),
                                                                  "waiting_room": False}) as r:
                    room = await r.json()
                    assert r.status == 201, room

                def token(pid: str, role: str, room_id: str = room["id"]) -> str:
                    return mint_token(api_key=server.key, api_secret=server.secret, room_id=room_id, participant_id=pid,
                                      role=role)

                publisher = ReplaySession(ws, token("pub", "therapist"), clip, host=HOST, publish=True)
                sessions.append(publisher)
                await publisher.start()
                for i in range(n):
                    # Clients first (a family room holds six), then observers, none of them publishing.
                    role = "client" if i < 6 else "observer"
                    sub = ReplaySession(ws, token(f"sub{i}", role), clip, host=HOST, publish=False)
                    sessions.append(sub)
                    subscribers.append(sub)
                    await sub.start()
            await asyncio.gather(*(asyncio.wait_for(s.subscribed.wait(), 10) for s in subscribers))
            await asyncio.sleep(warmup)
            # The window runs from just after one /metrics scrape to just before the next, so rendering
            # the metrics (a few ms) is not counted as forwarding; the packets the scrapes count differ by
            # what the server forwards during one render, well under 0.1 % of a 10 s window.
            fwd0, rcv0 = await scrape(http, base)
            cpu0 = floor.cpu_seconds(pid)
            got0 = [s.media.totals() for s in subscribers]
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            cpu1 = floor.cpu_seconds(pid)
            elapsed = time.monotonic() - t0
            fwd1, rcv1 = await scrape(http, base)
            got1 = [s.media.totals() for s in subscribers]
            rss = psutil.Process(pid).memory_info().rss / 1e6
        cpu = cpu1 - cpu0
        egress, ingress = fwd1 - fwd0, rcv1 - rcv0
        delivered = sum(b["packets"] - a["packets"] for a, b in zip(got0, got1))
        lost = sum(b["lost"] - a["lost"] for a, b in zip(got0, got1))
        return Result(
            subscribers=n, rooms=rooms, seconds=round(elapsed, 2), ingress_pps=round(ingress / elapsed, 1),
            egress_pps=round(egress / elapsed, 1), server_cpu_fraction=round(cpu / elapsed, 4),
            us_per_egress_packet=round(cpu / egress * 1e6, 2) if egress else float("nan"),
            us_per_ingress_packet=round(cpu / ingress * 1e6, 2) if ingress else float("nan"),
            subscriber_loss_fraction=round(lost / max(1, delivered + lost), 5), rss_mb=round(rss, 1),
        )
    finally:
        for s in sessions:
            with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                await asyncio.wait_for(s.close(), 5)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--subscribers", type=int, action="append", help="N (repeatable); default 1 4 10")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rooms", type=int, default=1, help="rooms, each with one publisher and N subscribers")
    parser.add_argument("--video-bitrate", type=int, default=1_000_000, help="the publisher's VP8 rate (bit/s)")
    parser.add_argument("--floor", action="store_true",
                        help="after each N, floor.py's py-srtp forwarder at the same N (one room only)")
    parser.add_argument("--json", action="store_true", help="one JSON object per N")
    args = parser.parse_args()
    if args.floor and args.rooms != 1:
        parser.error("--floor compares one room with one minimal forwarder")
    ns = args.subscribers or [1, 4, 10]
    results = []
    floor_clip = load_clip(video_bitrate=args.video_bitrate) if args.floor else None
    for n in ns:
        r = asyncio.run(run_one(n, warmup=args.warmup, seconds=args.seconds, max_observers=max(ns),
                                rooms=args.rooms, video_bitrate=args.video_bitrate))
        if floor_clip is not None:
            base = floor.run_one("py-srtp", n, floor_clip, binary=None, warmup=2.0, seconds=args.seconds)
            r.floor_us_per_egress_packet = base.us_per_egress_packet
            r.ratio_to_floor = round(r.us_per_egress_packet / base.us_per_egress_packet, 2)
        results.append(r)
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
        return
    floor_head = f" {'floor us/egr':>12} {'x floor':>7}" if args.floor else ""
    print(f"{'N':>3} {'rooms':>5} {'ingress pps':>11} {'egress pps':>10} {'server CPU':>10} {'us/egress':>9} "
          f"{'us/ingress':>10} {'sub loss':>8} {'RSS MB':>7}{floor_head}")
    for r in results:
        floor_cols = f" {r.floor_us_per_egress_packet:>12.1f} {r.ratio_to_floor:>7.2f}" if args.floor else ""
        print(f"{r.subscribers:>3} {r.rooms:>5} {r.ingress_pps:>11.0f} {r.egress_pps:>10.0f} {r.server_cpu_fraction:>9.1%} "
              f"{r.us_per_egress_packet:>9.1f} {r.us_per_ingress_packet:>10.1f} {r.subscriber_loss_fraction:>8.2%} "
              f"{r.rss_mb:>7.1f}{floor_cols}")


if __name__ == "__main__":
    main()
