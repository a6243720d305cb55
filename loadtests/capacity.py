"""Capacity of one core: ramp 1:1 sessions against a server pinned to one core until a service level breaks.

Every step adds `--step` sessions (in a new media-client process on the other core) and holds for
`--step-seconds`; the last half of each step is measured. A step fails when subscriber loss is over 1 %,
p95 jitter over 30 ms, p95 join latency (join sent to first media received, for the step's new joins) over
1 s, or the server's core is over 85 % busy. The report: per step, sessions, server CPU, CPU per egress
packet, loss, jitter, join p95 and the client processes' CPU (a client-limited run is flagged), as a
table and as JSON; and the largest number of sessions held.

    flock /tmp/confidant-bench.lock python -m loadtests.capacity [--step 10] [--max 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import urllib.request
from dataclasses import asdict, dataclass

import psutil

from loadtests import server as load_server
from loadtests.workers import Worker, percentile, start_worker

LOSS_LIMIT, JITTER_LIMIT_MS, JOIN_P95_LIMIT_MS, CPU_LIMIT = 1.0, 30.0, 1000.0, 0.85


@dataclass
class Step:
    sessions: int
    server_cpu: float  # fraction of its one core
    egress_pps: float
    ingress_pps: float
    us_per_egress_packet: float
    loss_percent: float  # mean over participants
    jitter_ms_p95: float
    join_ms_p95: float
    joins_failed: int
    client_cpu: float  # cores used by all media-client processes
    held: bool
    broken: str  # which service levels broke ("" when held)


def scrape_packets(base: str) -> tuple[float, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    def total(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE))
    return total("confidant_packets_forwarded_total"), total("confidant_packets_received_total")


async def ramp(step: int, step_seconds: float, max_sessions: int, log: bool) -> list[Step]:
    two_cores = (os.cpu_count() or 1) >= 2
    srv = load_server.start(cpu=1 if two_cores else None)
    proc = psutil.Process(srv.process.pid)
    workers: list[Worker] = []
    steps: list[Step] = []
    try:
        while not steps or (steps[-1].held and steps[-1].sessions + step <= max_sessions):
            started = time.monotonic()
            worker = await start_worker(srv, sessions=step, hold=1e6, report_every=step_seconds / 4, stagger=0.1,
                                        cpu=0 if two_cores else None)
            workers.append(worker)
            await asyncio.sleep(step_seconds / 2)
            t0 = time.monotonic()
            cpu0, ccpu0 = sum(proc.cpu_times()[:2]), sum(w.cpu_seconds() for w in workers)
            out0, in0 = scrape_packets(srv.base)
            await asyncio.sleep(step_seconds / 2)
            elapsed = time.monotonic() - t0
            cpu1, ccpu1 = sum(proc.cpu_times()[:2]), sum(w.cpu_seconds() for w in workers)
            out1, in1 = scrape_packets(srv.base)
            window = [e for w in workers for e in w.events if e.at >= t0]
            joins = [e for e in worker.events if e.name == "first_media_ms" and e.at >= started]
            loss = [e.value for e in window if e.name == "loss_percent"]
            jitter = [e.value for e in window if e.name == "jitter_ms"]
            s = Step(
                sessions=len(workers) * step, server_cpu=round((cpu1 - cpu0) / elapsed, 3),
                egress_pps=round((out1 - out0) / elapsed), ingress_pps=round((in1 - in0) / elapsed),
                us_per_egress_packet=round((cpu1 - cpu0) / max(1.0, out1 - out0) * 1e6, 1),
                loss_percent=round(sum(loss) / max(1, len(loss)), 3), jitter_ms_p95=round(percentile(jitter, 0.95), 1),
                join_ms_p95=round(percentile([e.value for e in joins if not e.error], 0.95), 0),
                joins_failed=sum(1 for e in joins if e.error) + (2 * step - len(joins)),
                client_cpu=round((ccpu1 - ccpu0) / elapsed, 3), held=True, broken="")
            broken = [name for name, bad in (
                ("loss", s.loss_percent > LOSS_LIMIT), ("jitter", s.jitter_ms_p95 > JITTER_LIMIT_MS),
                ("join", not s.join_ms_p95 <= JOIN_P95_LIMIT_MS or s.joins_failed > 0),
                ("cpu", s.server_cpu > CPU_LIMIT)) if bad]
            s.held, s.broken = not broken, ",".join(broken)
            steps.append(s)
            if log:
                print(json.dumps(asdict(s)), flush=True)
    finally:
        for w in workers:
            await w.stop()
        srv.stop()
    return steps


def table(steps: list[Step]) -> str:
    lines = [("| 1:1 sessions | server CPU | egress pps | us/egress pkt | loss % | jitter p95 ms | join p95 ms | "
             "client CPU (cores) | held |"), "|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lines.append(f"| {s.sessions} | {s.server_cpu:.0%} | {s.egress_pps:.0f} | {s.us_per_egress_packet:.1f} | "
                     f"{s.loss_percent:.2f} | {s.jitter_ms_p95:.1f} | {s.join_ms_p95:.0f} | {s.client_cpu:.2f} | "
                     f"{'yes' if s.held else 'no: ' + s.broken} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=10, help="sessions added per step")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--max", type=int, default=300)
    parser.add_argument("--json", help="write the steps and the result to this file")
    args = parser.parse_args()
    steps = asyncio.run(ramp(args.step, args.step_seconds, args.max, log=True))
    held = [s.sessions for s in steps if s.held]
    result = {"max_sessions_held": max(held, default=0), "steps": [asdict(s) for s in steps],
              "limits": {"loss_percent": LOSS_LIMIT, "jitter_ms_p95": JITTER_LIMIT_MS,
                         "join_ms_p95": JOIN_P95_LIMIT_MS, "server_cpu": CPU_LIMIT}}
    print(table(steps))
    print(f"largest number of 1:1 sessions held on one core: {result['max_sessions_held']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
