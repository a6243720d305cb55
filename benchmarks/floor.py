"""Floor CPU per egress packet: minimal forwarders under exactly the traffic of `benchmarks/forwarding.py`.

`benchmarks/forwarding.py` divides the real server's CPU by the packets it forwards, but on a small VM
much of that figure is not our code: a publisher sending a frame every 33 ms leaves the core idle
between bursts (caches and clocks go cold), and on loopback the kernel charges the delivery into each
receiver socket to the process that sends. This benchmark replays the same clip with the same pacing
(VP8 640x480 30 fps, 1 Mbps by default, each frame's packets back to back; one Opus packet every 20 ms)
from a sender on core 0 into a minimal forwarder in a subprocess pinned to core 1 (as the server is),
with N receiver sockets draining on core 0. The forwarder's CPU time over the window (user + system:
the scheduler's runtime from /proc/PID/schedstat, in ns, else psutil's 10 ms ticks) is divided by the
egress packets it sent. The rows:

    c-sendto          floor_forwarder.c, compiled at run time with `cc -O2`: recv; N x (memcpy, rewrite
                      SSRC and sequence number, sendto)
    c-sendmmsg        the same with one sendmmsg per ingress packet
    py-srtp           CPython with pylibsrtp (AES-128-GCM, as the server): blocking recv, SRTP unprotect, then N x (copy, rewrite SSRC /
                      seq / timestamp with struct.pack_into, protect with that subscriber's session, sendto)
    py-srtp-asyncio   the same driven by loop.add_reader (uvloop if importable), draining each wake

so the real server's us/egress can be read as a ratio to the floor of the same N on the same machine.

    python benchmarks/floor.py                           # every forwarder at N = 1, 4, 10; a table
    python benchmarks/floor.py --forwarder py-srtp -n 10 --repeat 5     # min and median of 5 runs
    python benchmarks/floor.py --json                    # one JSON object per row

Runs on loopback, no root needed. Run it alone (`flock /tmp/confidant-bench.lock ...`): figures taken
while other work shares the machine are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import mmap
import multiprocessing as mp
import os
import secrets
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from client.media import AUDIO_CLOCK, AUDIO_PTIME, VIDEO_CLOCK, Clip, load_clip
from client.replay import AUDIO_PT, VIDEO_PT

HOST = "127.0.0.1"
FORWARDERS = ("c-sendto", "c-sendmmsg", "py-srtp", "py-srtp-asyncio")
C_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor_forwarder.c")
AUDIO_SSRC, VIDEO_SSRC = 0x0A0D_10AA, 0x0F1D_E0BB
RECV_BUFFER = 4 << 20


@dataclass
class Run:
    forwarder: str
    subscribers: int
    ingress_pps: float
    egress_pps: float
    cpu_fraction: float  # of one core
    us_per_egress_packet: float
    us_per_ingress_packet: float
    loss_fraction: float


def srtp_policy(key: bytes, ssrc_type: int) -> Any:
    """AES-128-GCM, the profile the server prefers and browsers pick (`sfu/dtls.py`): 16-byte key + 12 salt."""
    from pylibsrtp import Policy

    return Policy(key=key, ssrc_type=ssrc_type, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_128_GCM)


# -- the processes on core 0 -------------------------------------------------------------------------


def _quiet() -> None:
    """Children leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def send(clip: Clip, port: int, key: bytes | None, sent: Any) -> None:
    """Replay the clip in real time as `ReplaySession._pace` does, SRTP-protected when `key` is given."""
    _quiet()
    from pylibsrtp import Policy, Session

    protect: Callable[[bytes], bytes] = (
        Session(srtp_policy(key, Policy.SSRC_ANY_OUTBOUND)).protect if key else bytes)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest = (HOST, port)
    vseq = aseq = n_video = n_audio = 0
    start = time.monotonic()
    while True:
        next_video, next_audio = start + n_video / clip.fps, start + n_audio * AUDIO_PTIME
        delay = min(next_video, next_audio) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if next_audio <= next_video:
            ts = n_audio * int(AUDIO_CLOCK * AUDIO_PTIME) & 0xFFFFFFFF
            packets = [struct.pack("!BBHII", 0x80, AUDIO_PT, aseq, ts, AUDIO_SSRC)
                       + clip.audio[n_audio % len(clip.audio)]]
            aseq, n_audio = (aseq + 1) & 0xFFFF, n_audio + 1
        else:
            payloads = clip.video[n_video % len(clip.video)].payloads
            ts, last = n_video * VIDEO_CLOCK // clip.fps & 0xFFFFFFFF, len(payloads) - 1
            packets = [struct.pack("!BBHII", 0x80, VIDEO_PT | (0x80 if i == last else 0), (vseq + i) & 0xFFFF,
                                   ts, VIDEO_SSRC) + p for i, p in enumerate(payloads)]
            vseq, n_video = (vseq + len(payloads)) & 0xFFFF, n_video + 1
        for p in packets:
            sock.sendto(protect(p), dest)
        sent.value += len(packets)


def drain(socks: list[socket.socket], got: Any) -> None:
    """Count what the N subscriber sockets receive."""
    _quiet()
    poll = select.epoll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        poll.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s.recv
    while True:
        for fd, _ in poll.poll():
            recv, k = by_fd[fd], 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    recv(2048)
                    k += 1
            got.value += k


# -- the Python forwarders (a subprocess: floor.py _forward KIND FD COUNTERS KEY PORT:KEY...) ------------


def forward(kind: str, fd: int, counters: str, key: str, subs: list[str]) -> None:
    _quiet()
    from pylibsrtp import Policy, Session

    sock = socket.socket(fileno=fd)
    unprotect = Session(srtp_policy(bytes.fromhex(key), Policy.SSRC_ANY_INBOUND)).unprotect
    outs = []  # per subscriber: its own outbound session, address, seq / ts offsets, SSRC mask
    for i, spec in enumerate(subs):
        port, sub_key = spec.split(":")
        session = Session(srtp_policy(bytes.fromhex(sub_key), Policy.SSRC_ANY_OUTBOUND))
        outs.append((session.protect, (HOST, int(port)), 1000 * i, 3_000_000 * i, 0x5000 + i))
    with open(counters, "r+b") as f:
        shm = mmap.mmap(f.fileno(), 16)
    n, ingress = len(outs), 0
    pack_into, unpack_from, sendto = struct.pack_into, struct.unpack_from, sock.sendto

    def handle(data: bytes) -> None:
        nonlocal ingress
        plain = unprotect(data)
        seq, ts, ssrc = unpack_from("!HII", plain, 2)
        for protect, addr, dseq, dts, mask in outs:
            buf = bytearray(plain)
            pack_into("!HII", buf, 2, (seq + dseq) & 0xFFFF, (ts + dts) & 0xFFFFFFFF, ssrc ^ mask)
            sendto(protect(bytes(buf)), addr)
        ingress += 1
        pack_into("QQ", shm, 0, ingress, ingress * n)

    if kind == "py-srtp":
        recv = sock.recv
        while True:
            handle(recv(2048))

    async def serve() -> None:
        sock.setblocking(False)

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                while True:
                    handle(sock.recv(2048))

        asyncio.get_running_loop().add_reader(sock.fileno(), readable)
        await asyncio.Future()

    try:
        import uvloop
        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


# -- the parent ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system time of `pid`: the scheduler's runtime in ns (what /proc/PID/stat rounds to ticks)."""
    paths = glob.glob(f"/proc/{pid}/task/*/schedstat")
    if paths:
        total = 0
        for path in paths:
            with contextlib.suppress(OSError), open(path) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    return float(sum(psutil.Process(pid).cpu_times()[:2]))


def stop(proc: subprocess.Popen[bytes] | mp.process.BaseProcess) -> None:
    with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
        proc.terminate()
    if isinstance(proc, subprocess.Popen):
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    else:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
    s.bind((HOST, 0))
    return s


def run_one(kind: str, n: int, clip: Clip, *, binary: str | None, warmup: float, seconds: float) -> Run:
    ctx = mp.get_context("fork")
    key = secrets.token_bytes(28) if kind.startswith("py-") else None
    with contextlib.ExitStack() as stack:
        counters = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "counters")
        with open(counters, "w+b") as f:
            f.write(bytes(16))
            f.flush()
            shm = mmap.mmap(f.fileno(), 16)
        stack.callback(shm.close)
        ingress = stack.enter_context(udp_socket())
        receivers = [stack.enter_context(udp_socket()) for _ in range(n)]
        ports = [s.getsockname()[1] for s in receivers]
        fd = ingress.fileno()
        if key is not None:
            cmd = [sys.executable, os.path.abspath(__file__), "_forward", kind, str(fd), counters, key.hex(),
                   *(f"{p}:{secrets.token_hex(28)}" for p in ports)]
        else:
            assert binary is not None
            cmd = [binary, kind.removeprefix("c-"), str(fd), counters, *map(str, ports)]
        proc = subprocess.Popen(cmd, pass_fds=(fd,))
        stack.callback(stop, proc)
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(proc.pid, {1})
        got, sent = ctx.RawValue("Q", 0), ctx.RawValue("Q", 0)
        receiver = ctx.Process(target=drain, args=(receivers, got), daemon=True)
        sender = ctx.Process(target=send, args=(clip, ingress.getsockname()[1], key, sent), daemon=True)
        for p in (receiver, sender):
            p.start()
            stack.callback(stop, p)

        def sample() -> tuple[float, float, int, int]:
            ing, egr = struct.unpack_from("QQ", shm)
            return time.monotonic(), cpu_seconds(proc.pid), ing, egr

        time.sleep(warmup)
        t0, cpu0, ing0, egr0 = sample()
        time.sleep(seconds)
        t1, cpu1, ing1, egr1 = sample()
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} forwarder exited with {proc.returncode}")
        stop(sender)
        time.sleep(0.3)  # let the last packets through
        loss = max(0.0, 1 - got.value / max(1, sent.value * n))
    elapsed, cpu, ingress_n, egress_n = t1 - t0, cpu1 - cpu0, ing1 - ing0, egr1 - egr0
    nan = float("nan")
    return Run(forwarder=kind, subscribers=n, ingress_pps=round(ingress_n / elapsed, 1),
               egress_pps=round(egress_n / elapsed, 1), cpu_fraction=round(cpu / elapsed, 4),
               us_per_egress_packet=round(cpu / egress_n * 1e6, 2) if egress_n else nan,
               us_per_ingress_packet=round(cpu / ingress_n * 1e6, 2) if ingress_n else nan,
               loss_fraction=round(loss, 5))


def compile_forwarder(directory: str) -> tuple[str | None, str]:
    """The binary, or None and why not."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (cc, gcc, clang) on PATH"
    binary = os.path.join(directory, "floor_forwarder")
    done = subprocess.run([cc, "-O2", "-o", binary, C_SOURCE], check=False, capture_output=True, text=True)
    if done.returncode:
        return None, f"{cc} failed: {done.stderr.strip()}"
    return binary, ""


def main() -> None:
    if sys.argv[1:2] == ["_forward"]:
        kind, fd, counters, key, *subs = sys.argv[2:]
        forward(kind, int(fd), counters, key, subs)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--subscribers", type=int, action="append", help="N (repeatable); default 1 4 10")
    parser.add_argument("--forwarder", choices=FORWARDERS, action="append", help="(repeatable); default all")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--video-bitrate", type=int, default=1_000_000, help="the publisher's VP8 rate (bit/s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the median run and the min are shown")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the subprocesses are stopped
    ns, kinds = args.subscribers or [1, 4, 10], args.forwarder or list(FORWARDERS)
    clip = load_clip(video_bitrate=args.video_bitrate)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        binary, why = compile_forwarder(tmp) if any(k.startswith("c-") for k in kinds) else (None, "")
        if binary is None and why:
            print(f"skipping c-sendto and c-sendmmsg: {why}", file=sys.stderr)
            kinds = [k for k in kinds if not k.startswith("c-")]
        runs: dict[tuple[str, int], list[Run]] = {(k, n): [] for k in kinds for n in ns}
        for _ in range(args.repeat):  # repeats interleaved, so drift spreads over every row
            for k in kinds:
                for n in ns:
                    runs[k, n].append(run_one(k, n, clip, binary=binary, warmup=args.warmup, seconds=args.seconds))
    rows = []
    for rs in runs.values():
        us = [r.us_per_egress_packet for r in rs]
        median = sorted(rs, key=lambda r: r.us_per_egress_packet)[(len(rs) - 1) // 2]
        rows.append((median, min(us), statistics.median(us)))
    if args.json:
        for median, low, mid in rows:
            print(json.dumps({**asdict(median), "us_per_egress_packet": mid, "us_per_egress_packet_min": low,
                              "runs": args.repeat}))
        return
    print(f"{'forwarder':<16} {'N':>3} {'ingress pps':>11} {'egress pps':>10} {'CPU':>6} {'us/egress':>9} "
          f"{'(min)':>6} {'us/ingress':>10} {'loss':>6}")
    for r, low, mid in rows:
        print(f"{r.forwarder:<16} {r.subscribers:>3} {r.ingress_pps:>11.0f} {r.egress_pps:>10.0f} "
              f"{r.cpu_fraction:>6.1%} {mid:>9.1f} {low:>6.1f} {r.us_per_ingress_packet:>10.1f} "
              f"{r.loss_fraction:>6.2%}")
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio's default loop"
    print(f"\n{args.repeat} run(s) per row, {args.seconds:g} s each; us/egress is the median and (min) the least, "
          f"the other columns are the median run's; py-srtp-asyncio ran on {loop}; load average "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the subprocesses were stopped on the way out
        sys.exit(130)
