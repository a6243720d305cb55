"""CPU of the forwarding path alone, in process: one ingress RTP packet fanned out to N subscribers.

A real `MediaServer` on loopback; N subscriber transports complete ICE and DTLS with client-role
transports on their own endpoints (as the load client's are). One video producer gets plain RTP handed
straight to its connection (`Connection.on_rtp`: parse, producer, N consumers, header rewrite, SRTP
protect, `sendto`); the server's CPU time (`time.process_time`) over a burst is divided by the packets
sent. Ingress decryption, feedback, timers and the subscribers' own work are not in the figure: this is
the per-egress floor that `benchmarks/forwarding.py` measures on top of everything else.

    python benchmarks/fanout.py [-n 10] [--packets 3000] [--size 1100]
    python benchmarks/fanout.py -n 10 --batch 1 --gap-ms 6    # one ingress packet every 6 ms, as a 1 Mbps
                                                              # publisher sends them: the CPU idles between

On this VM the same path costs about three times as much per packet when the process idles a few
milliseconds between packets (caches and clocks go cold) as when it runs back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sfu.params import Codec, ConsumerParams, Encoding, HeaderExtension, MediaKind, ProducerParams
from sfu.server import MediaConfig, MediaServer
from sfu.transport import TransportState, WebRtcTransport
from sfu.udp import UdpEndpoint

HOST = "127.0.0.1"
VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97, rtcp_feedback=("nack", "nack pli", "transport-cc"))
TCC_ID = 3
PUB_SSRC = 0x1234


class _Quiet:
    """Listener of the subscribers' client-side transports: they only need to be connected."""

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        pass

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        pass

    def on_state(self, transport: WebRtcTransport, state: object, reason: str | None) -> None:
        pass


def rtp_packet(seq: int, size: int) -> bytes:
    """A publisher's VP8 packet with a transport-cc extension, as the connection gets it after SRTP; the
    first one starts a keyframe, so every consumer starts forwarding."""
    head = struct.pack("!BBHII", 0x90, 96, seq & 0xFFFF, (seq // 3) * 3000, PUB_SSRC)
    ext = struct.pack("!HHBHx", 0xBEDE, 1, TCC_ID << 4 | 1, seq & 0xFFFF)
    vp8 = bytes((0x10, 0x00 if seq == 0 else 0x01)) + bytes(size - 2)  # start of a key / delta frame
    return head + ext + vp8


async def run(n: int, packets: int, size: int, batch: int = 50, gap: float = 0.002) -> tuple[float, int]:
    server = MediaServer(MediaConfig(host=HOST, announced_ips=(HOST,)))
    await server.start()
    clients: list[UdpEndpoint] = []
    try:
        router = server.create_router()
        pub = server.create_transport(on_closed=lambda reason: None)
        producer = router.add_producer(pub, ProducerParams(
            MediaKind.VIDEO, "0", (VP8,), {HeaderExtension.TRANSPORT_CC: TCC_ID},
            (Encoding(ssrc=PUB_SSRC),)))
        subs = []
        for i in range(n):
            sub = server.create_transport(on_closed=lambda reason: None)
            ep = await UdpEndpoint.create(HOST, 0, stats=server.stats)
            clients.append(ep)
            client = ep.create_transport(_Quiet(), role="client")
            sub.set_remote(ice_ufrag=client.ice_ufrag, ice_pwd=client.ice_pwd, fingerprints=[client.fingerprint])
            client.set_remote(ice_ufrag=sub.ice_ufrag, ice_pwd=sub.ice_pwd, fingerprints=[sub.fingerprint])
            ep.connect(client, (HOST, server.port))
            router.add_consumer(sub, producer, ConsumerParams(
                MediaKind.VIDEO, "0", VP8, ssrc=0x5000 + i, rtx_ssrc=0x6000 + i,
                header_extensions={HeaderExtension.TRANSPORT_CC: TCC_ID}))
            subs.append(sub)
        async with asyncio.timeout(10):
            while any(s.state is not TransportState.CONNECTED for s in subs):
                await asyncio.sleep(0.01)
        connection = server.connection_of(pub)
        sent0 = sum(server.stats.packets_forwarded.values())
        best = float("inf")
        seq = 0
        for _ in range(5):
            burst = [rtp_packet(s, size) for s in range(seq, seq + packets)]
            seq += packets
            cpu = 0.0
            for i in range(0, packets, batch):  # `batch` ingress packets at a time, then the loop drains sockets
                start = time.process_time()
                for data in burst[i : i + batch]:
                    connection.on_rtp(pub, data, now=time.monotonic())
                cpu += time.process_time() - start
                await asyncio.sleep(gap)
            best = min(best, cpu / (packets * n))
        sent = int(sum(server.stats.packets_forwarded.values()) - sent0)
        return best * 1e6, sent
    finally:
        for ep in clients:
            ep.close()
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--subscribers", type=int, action="append", help="N (repeatable); default 1 4 10")
    parser.add_argument("--packets", type=int, default=3000, help="ingress packets per run (best of 5 runs)")
    parser.add_argument("--size", type=int, default=1100, help="VP8 payload bytes")
    parser.add_argument("--batch", type=int, default=50, help="ingress packets handled back to back")
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between batches (the sockets drain)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the server does")
    args = parser.parse_args()
    print(f"{'N':>3} {'us/egress':>9} {'forwarded':>9}   (forwarding path only, batches of {args.batch} every "
          f"{args.gap_ms:g} ms: best of 5 runs)")
    for n in args.subscribers or [1, 4, 10]:
        if args.uvloop:
            import uvloop

            us, sent = uvloop.run(run(n, args.packets, args.size, args.batch, args.gap_ms / 1000))
        else:
            us, sent = asyncio.run(run(n, args.packets, args.size, args.batch, args.gap_ms / 1000))
        print(f"{n:>3} {us:>9.2f} {sent:>9}")


if __name__ == "__main__":
    main()
