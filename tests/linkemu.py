"""A userspace link emulator between two TUN devices: delay, jitter, loss and rate (the kernel has no netem).

`LinkModel` is the sans-I/O core (one per direction: packet size and `now` in, delivery time or drop out);
`main()` is the shell: it opens two TUN devices, moves one into a network namespace, and shuttles packets
between them on a heap ordered by delivery time. Run it as a subprocess (it prints `ready` once the
devices are up) and stop it with SIGTERM; the devices vanish when it exits.

    python -m tests.linkemu --ns cf-abc123 --near 10.78.9.1 --far 10.78.9.2 --delay 50 --jitter 5 --loss 1 --rate 1000
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

TUNSETIFF = 0x400454CA  # linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


@dataclass(frozen=True)
class LinkParams:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_kbit: float = 0.0  # 0 means unlimited
    queue_ms: float = 200.0  # drop-tail: packets that would wait longer than this in the rate queue are lost


class LinkModel:
    """One direction of the link: serialisation at `rate_kbit`, bounded queue, loss, delay with jitter, no reordering."""

    def __init__(self, params: LinkParams, rng: random.Random) -> None:
        self.params = params
        self._rng = rng
        self._busy_until = 0.0
        self._last_delivery = 0.0
        self.dropped = 0

    def schedule(self, size: int, *, now: float) -> float | None:
        p = self.params
        if p.loss_pct and self._rng.random() * 100 < p.loss_pct:
            self.dropped += 1
            return None
        t = now
        if p.rate_kbit:
            start = max(now, self._busy_until)
            if start - now > p.queue_ms / 1000:
                self.dropped += 1
                return None
            t = self._busy_until = start + size * 8 / (p.rate_kbit * 1000)
        t += (p.delay_ms + self._rng.uniform(-p.jitter_ms, p.jitter_ms)) / 1000
        t = self._last_delivery = max(t, self._last_delivery)
        return t


def open_tun(name: str) -> int:
    # Chromium treats interfaces named tun*/tap* as VPNs, so callers must pick other names.
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ns", required=True, help="namespace that gets the far end")
    ap.add_argument("--near", required=True, help="address of the near end (stays in this namespace)")
    ap.add_argument("--far", required=True, help="address of the far end (inside --ns)")
    ap.add_argument("--dev-near", default="lnkn0")
    ap.add_argument("--dev-far", default="lnkf0")
    ap.add_argument("--route", action="append", default=[], help="extra prefix the far end routes via near")
    ap.add_argument("--delay", type=float, default=0.0, help="one-way delay, ms")
    ap.add_argument("--jitter", type=float, default=0.0, help="+- ms, uniform; never reorders")
    ap.add_argument("--loss", type=float, default=0.0, help="percent, each direction")
    ap.add_argument("--rate", type=float, default=0.0, help="kbit/s each direction, 0 = unlimited")
    ap.add_argument("--queue-ms", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)

    params = LinkParams(a.delay, a.jitter, a.loss, a.rate, a.queue_ms)
    rng = random.Random(a.seed)
    near, far = open_tun(a.dev_near), open_tun(a.dev_far)
    _ip("link", "set", a.dev_far, "netns", a.ns)
    _ip("addr", "add", a.near, "peer", a.far, "dev", a.dev_near)
    _ip("link", "set", a.dev_near, "up")
    _ip("-n", a.ns, "addr", "add", a.far, "peer", a.near, "dev", a.dev_far)
    _ip("-n", a.ns, "link", "set", a.dev_far, "up")
    for prefix in a.route:
        _ip("-n", a.ns, "route", "add", prefix, "via", a.near)

    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    other = {near: far, far: near}
    models = {near: LinkModel(params, rng), far: LinkModel(params, rng)}
    queue: list[tuple[float, int, int, bytes]] = []
    seq = 0
    print("ready", flush=True)
    while running:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, pkt = heapq.heappop(queue)
            try:
                os.write(fd, pkt)
            except OSError:
                pass
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            readable, _, _ = select.select([near, far], [], [], timeout)
        except InterruptedError:
            continue
        for fd in readable:
            pkt = os.read(fd, 65535)
            at = models[fd].schedule(len(pkt), now=time.monotonic())
            if at is not None:
                heapq.heappush(queue, (at, seq, other[fd], pkt))
                seq += 1
    print(f"dropped near->far {models[near].dropped} far->near {models[far].dropped}", file=sys.stderr)


if __name__ == "__main__":
    main()
