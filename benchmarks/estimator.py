"""CPU time of `BandwidthEstimator.on_packet_results` per packet result.

    .venv/bin/python benchmarks/estimator.py [--seconds 60] [--repeat 5]

Replays a recorded-shape feedback stream (1.5 Mbps video in 1200-byte packets at 30 fps plus 50 pps of
audio, reported every 100 ms, with a slowly varying queue and 0.5 % loss) through a fresh estimator and
divides the process CPU time by the number of packet results. Prints the best and the median of the
repeats; the spread between them is the machine's noise.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from adaptation.estimator import BandwidthEstimator
from adaptation.types import PacketResult


def feedback_stream(seconds: float, seed: int = 1) -> list[tuple[float, list[PacketResult]]]:
    rng = random.Random(seed)
    packets: list[tuple[float, int]] = []
    t = 0.0
    while t < seconds:  # one video frame of ~6.25 kB every 1/30 s, paced 1 ms apart
        for i in range(6):
            packets.append((t + i * 0.001, 1200 if i < 5 else 250))
        t += 1 / 30
    packets += [(k * 0.02, 100) for k in range(int(seconds / 0.02))]
    packets.sort()
    reports: list[tuple[float, list[PacketResult]]] = []
    current: list[PacketResult] = []
    next_report = 0.1
    for seq, (send, size) in enumerate(packets):
        queue = 0.010 + 0.008 * (1 + math.sin(send / 3.0)) + rng.random() * 0.002
        arrival = None if rng.random() < 0.005 else send + 0.05 + queue
        if send >= next_report:
            reports.append((next_report + 0.05, current))
            current = []
            next_report += 0.1
        current.append(PacketResult(seq, send, size, arrival))
    reports.append((next_report + 0.05, current))
    return reports


def measure(reports: list[tuple[float, list[PacketResult]]]) -> float:
    est = BandwidthEstimator()
    count = sum(len(r) for _, r in reports)
    start = time.process_time()
    for now, results in reports:
        est.on_packet_results(results, now=now)
    return (time.process_time() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds of feedback")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reports = feedback_stream(args.seconds)
    count = sum(len(r) for _, r in reports)
    runs = [measure(reports) for _ in range(args.repeat)]
    print(f"{count} packet results in {len(reports)} reports, {args.repeat} runs")
    print(f"best   {min(runs) * 1e6:.2f} us CPU per packet result")
    print(f"median {statistics.median(runs) * 1e6:.2f} us CPU per packet result")
    print(f"worst  {max(runs) * 1e6:.2f} us CPU per packet result")


if __name__ == "__main__":
    main()
