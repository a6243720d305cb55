"""What the load client costs: one process on one core driving N concurrent 1:1 sessions (default 30,
i.e. 60 participants each publishing ~500 kbps VP8 + Opus and receiving the other), and whether it keeps up.

    flock /tmp/confidant-bench.lock python -m loadtests.clientcost [--sessions 30] [--seconds 30] [--json]

The server runs pinned to the other core. "Keeps up" means: received bitrate near the clip's rate, loss
~0, no freezes, and the client's own timers late by under 20 ms at p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from client.media import load_clip
from loadtests import server as load_server
from loadtests.workers import percentile, start_worker


async def measure(sessions: int, seconds: float) -> dict[str, float]:
    two_cores = (os.cpu_count() or 1) >= 2
    srv = load_server.start(cpu=1 if two_cores else None)
    try:
        worker = await start_worker(srv, sessions=sessions, hold=seconds + 30, report_every=seconds / 3,
                                    stagger=0.05, cpu=0 if two_cores else None)
        participants = 2 * sessions
        deadline = time.monotonic() + 60
        while sum(1 for e in worker.events if e.name == "first_media_ms") < participants:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        joined = time.monotonic()
        cpu0 = worker.cpu_seconds()
        await asyncio.sleep(seconds)
        cpu1 = worker.cpu_seconds()
        window = time.monotonic() - joined
        await worker.stop()
        reports = [e for e in worker.events if joined + 1 <= e.at <= joined + window + 1]
        kbps = [e.value for e in reports if e.name == "received_kbps"]
        loss = [e.value for e in reports if e.name == "loss_percent"]
        lag = [e.value for e in worker.events if e.name == "client_loop_lag_p99_ms"]
        return {
            "sessions": sessions, "participants": participants,
            "participants_with_media": sum(1 for e in worker.events if e.name == "first_media_ms" and not e.error),
            "client_cpu_fraction_of_core": round((cpu1 - cpu0) / window, 3),
            "client_cpu_ms_per_participant_second": round(1000 * (cpu1 - cpu0) / window / participants, 2),
            "received_kbps_mean": round(sum(kbps) / max(1, len(kbps)), 1),
            "clip_kbps": round((load_clip().video_bitrate + 32_000) / 1000, 1),
            "loss_percent_max": round(max(loss, default=float("nan")), 3),
            "freezes": sum(e.value for e in reports if e.name == "freezes"),
            "client_loop_lag_p99_ms": round(lag[-1] if lag else float("nan"), 1),
            "jitter_ms_p95": round(percentile([e.value for e in reports if e.name == "jitter_ms"], 0.95), 2),
            "errors": sum(1 for e in worker.events if e.error),
        }
    finally:
        srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.sessions, args.seconds))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>40}: {value}")


if __name__ == "__main__":
    main()
