"""CPU time of one `DownlinkController` driven as the live server drives it.

    .venv/bin/python benchmarks/controller.py [--seconds 60] [--repeat 5] [--digest]

A subscriber with two simulcast video tracks (150 / 500 / 1500 kbps, wandering +-5 %) and 40 kbps of
audio behind a FIFO bottleneck whose capacity steps 2.5 -> 0.9 -> 2.5 Mbps. As sfu/downlink.py does
from the connection's 20 ms tick: transport-wide feedback (~11 results) goes to `on_feedback` every
100 ms, and every 100 ms the media is re-measured (`set_media`: the SFU's meters move every 250 ms, and
unchanged tracks come back as the same objects) and `on_timer` runs; probe clusters are sent and
reported back. The run is recorded once in closed loop, then the recorded calls are replayed on fresh
controllers and only the controller's CPU time is counted.
`--digest` prints a hash of every decision, to check that a change to the controller kept its behaviour.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import math
import statistics
import time
from collections import deque
from operator import methodcaller

from adaptation.allocator import LayerState, VideoTrack
from adaptation.controller import Decision, DownlinkController
from adaptation.types import PacketResult

TICK_S = 0.020  # sfu/connection.py tick
FEEDBACK_S = 0.100  # a browser's transport-cc feedback interval
FEEDBACK_PHASE_S = 0.040  # feedback lands between two timer runs, as on a live connection
TIMER_S = 0.100  # sfu/downlink.py ADAPT_INTERVAL
ONE_WAY_S = 0.025
MAX_QUEUE_S = 0.300
LAYERS_BPS = (150_000.0, 500_000.0, 1_500_000.0)
AUDIO_BPS = 40_000.0
AUDIO_PER_TIMER = 5  # 50 packets/s
VIDEO_PER_TIMER = 6  # ~11 results per feedback with the audio
METER_S = 0.25  # sfu/producer.py RATE_BUCKET: measured rates move this often

Call = methodcaller  # applied to a fresh controller on replay


def capacity(t: float, seconds: float) -> float:
    return 900_000.0 if 0.4 * seconds <= t < 0.7 * seconds else 2_500_000.0


_last_media: dict[float, tuple[float, tuple[VideoTrack, ...]]] = {}


def media(now: float) -> tuple[float, tuple[VideoTrack, ...]]:
    """What `DownlinkAdapter._set_media` would measure at `now`: the meters move every 250 ms, and while
    they have not it hands the controller the same objects again."""
    bucket = math.floor(now / METER_S) * METER_S
    key = bucket if now >= 1.0 else -bucket - 1.0
    cached = _last_media.get(key)
    if cached is not None:
        return cached
    tracks = []
    for k, name in enumerate(("cam-a", "cam-b")):
        layers = tuple(
            LayerState(bps * (1.0 + 0.05 * math.sin(bucket / (7.0 + i + k))), 0.0 if now >= 1.0 else None)
            for i, bps in enumerate(LAYERS_BPS)
        )
        tracks.append(VideoTrack(name, layers, priority=k))
    _last_media.clear()
    _last_media[key] = (AUDIO_BPS * (1.0 + 0.02 * math.sin(bucket)), tuple(tracks))
    return _last_media[key]


class _Link:
    """FIFO drained at the capacity, drop-tail at MAX_QUEUE_S; results come back in send order."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.free_at = 0.0
        self.seq = 0
        self.pending: deque[tuple[PacketResult, float]] = deque()  # result, when its fate is known

    def send(self, size: int, cluster: int | None, now: float) -> None:
        start = max(now, self.free_at)
        arrival: float | None = None
        if start - now <= MAX_QUEUE_S:
            self.free_at = start + size * 8.0 / capacity(now, self.seconds)
            arrival = self.free_at + ONE_WAY_S
        self.pending.append(
            (PacketResult(self.seq, now, size, arrival, cluster), arrival if arrival else now + ONE_WAY_S)
        )
        self.seq += 1

    def feedback(self, now: float) -> list[PacketResult]:
        out = []
        pending = self.pending
        while pending and pending[0][1] <= now - ONE_WAY_S:
            out.append(pending.popleft()[0])
        return out


def record(seconds: float) -> tuple[list[Call], int, str]:
    """Run closed loop; returns the calls made, the number of packet results and the decisions' digest."""
    controller = DownlinkController()
    link = _Link(seconds)
    calls: list[Call] = []
    digest = hashlib.sha256()
    results_count = 0
    total_bps = AUDIO_BPS
    sends: list[tuple[float, int, int, int]] = []  # heap of (send time, order, size, cluster or -1)
    order = 0
    next_feedback = FEEDBACK_PHASE_S
    next_timer = 0.0
    tick = 0
    while True:
        now = tick * TICK_S
        tick += 1
        if now > seconds:
            break
        while sends and sends[0][0] < now:
            at, _, size, cid = heapq.heappop(sends)
            if cid < 0:
                link.send(size, None, at)
                continue
            link.send(size, cid, at)
            calls.append(methodcaller("on_probe_sent", cid, size, now=at))
            controller.on_probe_sent(cid, size, now=at)
        decisions: list[Decision] = []
        if now >= next_feedback - 1e-9:
            next_feedback += FEEDBACK_S
            results = link.feedback(now)
            if results:
                results_count += len(results)
                calls.append(methodcaller("on_feedback", results, now=now))
                decisions.append(controller.on_feedback(results, now=now))
        if now >= next_timer - 1e-9:
            next_timer += TIMER_S
            audio, tracks = media(now)
            calls.append(methodcaller("set_media", audio, tracks))
            controller.set_media(audio, tracks)
            calls.append(methodcaller("on_timer", now=now))
            decisions.append(controller.on_timer(now=now))
            # What the allocation sends until the next timer, spread over it.
            video = total_bps - AUDIO_BPS
            planned = [(now + i * 0.02, int(AUDIO_BPS * 0.02 / 8)) for i in range(AUDIO_PER_TIMER)]
            if video > 0:
                size = int(video * TIMER_S / 8 / VIDEO_PER_TIMER)
                planned += [
                    (now + 0.003 + i * TIMER_S / VIDEO_PER_TIMER, size) for i in range(VIDEO_PER_TIMER)
                ]
            for at, size in planned:
                order += 1
                heapq.heappush(sends, (at, order, size, -1))
        for d in decisions:
            digest.update(repr(d).encode())
            total_bps = d.allocation.total_bps
            if d.probe is not None:
                c = d.probe
                for i in range(c.min_packets):
                    order += 1
                    heapq.heappush(sends, (now + i * c.spacing_s, order, c.packet_size, c.cluster_id))
    return calls, results_count, digest.hexdigest()[:16]


def replay(calls: list[Call]) -> float:
    controller = DownlinkController()
    start = time.process_time()
    for call in calls:
        call(controller)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--digest", action="store_true", help="print a hash of every decision")
    args = parser.parse_args()
    calls, count, digest = record(args.seconds)
    runs = [replay(calls) for _ in range(args.repeat)]
    print(
        f"{args.seconds:.0f} s simulated, {count} packet results, {len(calls)} controller calls, {args.repeat} runs"
    )
    if args.digest:
        print(f"decisions digest {digest}")
    for label, value in (("best", min(runs)), ("median", statistics.median(runs)), ("worst", max(runs))):
        print(
            f"{label:6} {value / args.seconds * 1e6:8.1f} us CPU per simulated second"
            f"  {value / count * 1e6:6.2f} us per packet result"
        )


if __name__ == "__main__":
    main()
