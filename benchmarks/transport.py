"""Cost of the egress hot path: `WebRtcTransport.send_rtp` (SRTP protect + sendto) per packet.

Two `UdpEndpoint`s on loopback are connected (client role -> server role), then the server transport
sends bursts without yielding to the loop. Rows split the cost: protect alone, the raw socket's sendto
alone, asyncio's DatagramTransport.sendto alone, `send_rtp` with a no-op send (our Python overhead +
protect), and the whole `send_rtp` through each of the two send paths.

    .venv/bin/python -m benchmarks.transport [--host 127.0.0.1] [--packets 20000] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import socket
import struct
import time
from collections.abc import Callable

from sfu.stats import MediaStats
from sfu.transport import TransportState, WebRtcTransport
from sfu.udp import UdpEndpoint


class Sink:
    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        pass

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        pass

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None:
        pass


def per_packet_us(fn: Callable[[bytes], object], make: Callable[[], list[bytes]], repeats: int = 7) -> float:
    """Best of `repeats` runs (the machine is shared; the minimum is the cost, the rest is noise)."""
    best = float("inf")
    for _ in range(repeats):
        packets = make()  # fresh sequence numbers each run: libsrtp rejects indices far behind the last
        start = time.perf_counter()
        for packet in packets:
            fn(packet)
        best = min(best, (time.perf_counter() - start) / len(packets))
    return best * 1e6


async def main(host: str, n: int) -> None:
    stats = MediaStats()
    server_ep = await UdpEndpoint.create(host, 0, stats=stats)
    client_ep = await UdpEndpoint.create(host, 0, stats=stats)
    server = server_ep.create_transport(Sink())
    client = client_ep.create_transport(Sink(), role="client")
    server.set_remote(ice_ufrag=client.ice_ufrag, ice_pwd=client.ice_pwd, fingerprints=[client.fingerprint])
    client.set_remote(ice_ufrag=server.ice_ufrag, ice_pwd=server.ice_pwd, fingerprints=[server.fingerprint])
    client_ep.connect(client, server_ep.local_address)
    async with asyncio.timeout(10):
        while server.state is not TransportState.CONNECTED or client.state is not TransportState.CONNECTED:
            await asyncio.sleep(0.01)
    addr = server.remote_address
    assert addr is not None
    # Raw sendto rows go to a socket nobody reads, so the peer is not fed replayed SRTP.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((host, 0))
    sink_addr = sink.getsockname()
    sock_sendto = server_ep._sock.sendto  # comparing the two send paths is the point
    aio_sendto = server_ep._transport.sendto  # type: ignore[union-attr]
    protect = server._srtp.outbound.protect  # type: ignore[union-attr]

    print(f"profile {server.srtp_profile}, {n} packets per run, best of 7, loopback {host}")
    print(
        f"{'payload':>8} | {'protect':>8} | {'sock.sendto':>11} | {'aio.sendto':>10} | {'send_rtp no I/O':>15} | "
        f"{'send_rtp (sock)':>15} | {'send_rtp (asyncio)':>18}   (us per packet)"
    )
    ssrc = 0
    for size in (160, 1200):
        # A new SSRC per run: bursts outrun the receiver, and its libsrtp cannot follow gaps of 2^15.
        def batch(size: int = size) -> list[bytes]:
            nonlocal ssrc
            ssrc += 1
            return [struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + bytes(size) for seq in range(n)]

        wire = [protect(p) for p in batch()]
        t_protect = per_packet_us(protect, batch)
        same: Callable[[], list[bytes]] = functools.partial(list, wire)
        t_sock = per_packet_us(lambda d: sock_sendto(d, sink_addr), same)
        t_aio = per_packet_us(lambda d: aio_sendto(d, sink_addr), same)
        await asyncio.sleep(0.05)  # let asyncio drain anything it buffered
        t_send = per_packet_us(server.send_rtp, batch)
        server._send = aio_sendto
        t_send_aio = per_packet_us(server.send_rtp, batch)
        server._send = lambda d, a: None  # protect + our Python, no syscall
        t_nosys = per_packet_us(server.send_rtp, batch)
        server._send = server_ep._send
        await asyncio.sleep(0.05)
        print(
            f"{size:>8} | {t_protect:>8.2f} | {t_sock:>11.2f} | {t_aio:>10.2f} | {t_nosys:>15.2f} | "
            f"{t_send:>15.2f} | {t_send_aio:>18.2f}"
        )
    print(f"drops: {dict(stats.drops) or 'none'}")
    sink.close()
    client_ep.close()
    server_ep.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the server does")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.packets))
    else:
        asyncio.run(main(args.host, args.packets))
