"""WebRtcTransport: a client-role and a server-role transport, in memory on simulated time and on real sockets."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from dataclasses import dataclass, field

import pytest
from aioice import stun
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.dtls import DtlsCertificate
from sfu.ice import Addr
from sfu.stats import DropReason, MediaStats
from sfu.transport import TransportState, WebRtcTransport
from sfu.udp import UdpEndpoint
from tests.netns import HOST_ADDR

SERVER: Addr = ("10.77.0.1", 40000)
CLIENT: Addr = ("10.77.0.2", 50000)
CERT = DtlsCertificate.generate()
CLIENT_CERT = DtlsCertificate.generate()


def rtp(seq: int, ssrc: int = 0x1234, payload: bytes = b"\x01" * 100) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, 1000 * seq, ssrc) + payload


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # an empty receiver report (RFC 3550 6.4.2)


@dataclass
class Recorder:
    rtp: list[bytes] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)
    states: list[tuple[TransportState, str | None]] = field(default_factory=list)
    event: asyncio.Event | None = None

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.rtp.append(data)
        if self.event:
            self.event.set()

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.rtcp.append(data)
        if self.event:
            self.event.set()

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None:
        self.states.append((state, reason))
        if self.event:
            self.event.set()


@dataclass
class Wire:
    """Two transports joined by hand: datagrams queue up and are delivered in order."""

    stats: MediaStats = field(default_factory=MediaStats)
    queue: list[tuple[str, bytes, Addr]] = field(default_factory=list)

    def sender(self, to: str, src: Addr) -> object:
        # A copy, as the kernel takes one: a transport's send may hand over a view of its SRTP buffer.
        return lambda data, addr: self.queue.append((to, bytes(data), src))


def make_pair(
    *, server_fp: tuple[str, str] | None = None, consent_timeout: float = 30.0
) -> tuple[WebRtcTransport, WebRtcTransport, Recorder, Recorder, Wire]:
    wire = Wire()
    rs, rc = Recorder(), Recorder()
    rng = random.Random(7)
    server = WebRtcTransport(
        stats=wire.stats, certificate=CERT, listener=rs, send=wire.sender("client", SERVER),  # type: ignore[arg-type]
        rng=rng, consent_timeout=consent_timeout,
    )
    client = WebRtcTransport(
        stats=wire.stats, certificate=CLIENT_CERT, listener=rc, send=wire.sender("server", CLIENT),  # type: ignore[arg-type]
        rng=rng, role="client",
    )
    server.set_remote(ice_ufrag=client.ice_ufrag, ice_pwd=client.ice_pwd, fingerprints=[client.fingerprint])
    client.set_remote(
        ice_ufrag=server.ice_ufrag, ice_pwd=server.ice_pwd, fingerprints=[server_fp or server.fingerprint]
    )
    return server, client, rs, rc, wire


def pump(server: WebRtcTransport, client: WebRtcTransport, wire: Wire, *, now: float) -> None:
    while wire.queue:
        to, data, src = wire.queue.pop(0)
        (server if to == "server" else client).datagram_received(data, src, now=now)


def connected_pair() -> tuple[WebRtcTransport, WebRtcTransport, Recorder, Recorder, Wire]:
    server, client, rs, rc, wire = make_pair()
    client.connect(SERVER, now=0.0)
    pump(server, client, wire, now=0.0)
    return server, client, rs, rc, wire


def test_handshake_connects_both_roles_and_media_flows_both_ways() -> None:
    server, client, rs, rc, wire = connected_pair()
    assert server.state is TransportState.CONNECTED and client.state is TransportState.CONNECTED
    assert [s for s, _ in rs.states] == [TransportState.CONNECTING, TransportState.CONNECTED]
    assert server.srtp_profile == "AEAD_AES_128_GCM"
    assert server.remote_address == CLIENT and client.remote_address == SERVER

    assert client.send_rtp(rtp(1)) and client.send_rtcp(rtcp_rr())
    assert server.send_rtp(rtp(2, ssrc=99)) and server.send_rtcp(rtcp_rr(99))
    on_wire = [data for _, data, _ in wire.queue]
    assert rtp(1) not in on_wire and all(len(d) > 16 for d in on_wire)  # encrypted, with auth tags
    pump(server, client, wire, now=0.1)
    assert rs.rtp == [rtp(1)] and rs.rtcp == [rtcp_rr()]
    assert rc.rtp == [rtp(2, ssrc=99)] and rc.rtcp == [rtcp_rr(99)]
    assert not wire.stats.drops


def test_send_before_connected_is_a_counted_drop() -> None:
    server, _, _, _, wire = make_pair()
    assert not server.send_rtp(rtp(1))
    assert not server.send_rtcp(rtcp_rr())
    assert wire.stats.drops[DropReason.NOT_CONNECTED] == 2


def test_tampered_srtp_is_a_counted_drop() -> None:
    server, client, rs, _, wire = connected_pair()
    client.send_rtp(rtp(1))
    _, data, src = wire.queue.pop()
    server.datagram_received(data[:-1] + bytes([data[-1] ^ 1]), src, now=1.0)
    server.datagram_received(data, ("10.77.0.9", 1), now=1.0)  # right bytes, unvalidated address
    server.datagram_received(data, src, now=1.0)
    server.datagram_received(data, src, now=1.0)  # replay
    assert rs.rtp == [rtp(1)]
    assert wire.stats.drops[DropReason.SRTP_UNPROTECT_FAILED] == 2
    assert wire.stats.drops[DropReason.UNKNOWN_ADDRESS] == 1


def test_wrong_fingerprint_closes_the_client_with_reason() -> None:
    server, client, _, rc, wire = make_pair(server_fp=("sha-256", "AB:" * 31 + "AB"))
    client.connect(SERVER, now=0.0)
    pump(server, client, wire, now=0.0)
    assert client.state is TransportState.CLOSED
    assert rc.states[-1] == (TransportState.CLOSED, "dtls_fingerprint_mismatch")
    assert wire.stats.dtls_failures >= 1


def test_client_retransmits_checks_until_answered_then_keeps_consent() -> None:
    server, client, _, _, wire = make_pair()
    client.connect(SERVER, now=0.0)
    wire.queue.clear()  # the first check is lost
    deadline = client.next_timer()
    assert deadline is not None and 0 < deadline <= 0.5
    client.handle_timer(now=deadline)
    assert len(wire.queue) == 1
    pump(server, client, wire, now=deadline)
    assert client.state is TransportState.CONNECTED
    # Consent checks every ~5 s keep the server alive well past its 30 s timeout.
    now = deadline
    for _ in range(20):
        t = client.next_timer()
        assert t is not None and t - now <= 6.0
        now = t
        client.handle_timer(now=now)
        server.handle_timer(now=now)
        pump(server, client, wire, now=now)
    assert now > 60 and server.state is TransportState.CONNECTED


def test_client_gives_up_when_never_answered() -> None:
    _, client, _, rc, _ = make_pair()
    client.connect(SERVER, now=0.0)
    now = 0.0
    while client.state is not TransportState.CLOSED and now < 60:
        t = client.next_timer()
        assert t is not None
        now = t
        client.handle_timer(now=now)
    assert rc.states[-1] == (TransportState.CLOSED, "ice_failed")
    assert 9.9 < now < 12


def test_close_notifies_peer_through_dtls() -> None:
    server, client, rs, rc, wire = connected_pair()
    client.close("bye")
    pump(server, client, wire, now=1.0)
    assert rc.states[-1] == (TransportState.CLOSED, "bye")
    assert rs.states[-1] == (TransportState.CLOSED, "dtls_closed")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_random_datagrams_never_raise_on_a_connected_transport(datagrams: list[bytes]) -> None:
    server, _, rs, _, wire = connected_pair()
    for data in datagrams:
        server.datagram_received(data, CLIENT, now=1.0)
    server.handle_timer(now=2.0)
    assert rs.rtp == [] and rs.rtcp == []
    # Whatever happened was counted; a transport stays usable unless a DTLS error closed it (also counted).
    if server.state is TransportState.CONNECTED:
        assert server.send_rtp(rtp(5))
    else:
        assert wire.stats.drops[DropReason.DTLS_ERROR] >= 1 or server.close_reason == "dtls_closed"


# ---- real sockets ---------------------------------------------------------------------------------------


async def test_two_endpoints_on_real_sockets_exchange_rtp_and_rtcp() -> None:
    stats = MediaStats()
    server_ep = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    client_ep = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    try:
        rs, rc = Recorder(event=asyncio.Event()), Recorder(event=asyncio.Event())
        server = server_ep.create_transport(rs)
        client = client_ep.create_transport(rc, role="client")
        server.set_remote(ice_ufrag=client.ice_ufrag, ice_pwd=client.ice_pwd, fingerprints=[client.fingerprint])
        client.set_remote(ice_ufrag=server.ice_ufrag, ice_pwd=server.ice_pwd, fingerprints=[server.fingerprint])
        client_ep.connect(client, server_ep.local_address)

        async def until(cond: object) -> None:
            async with asyncio.timeout(5):
                while not cond():  # type: ignore[operator]
                    for r in (rs, rc):
                        assert r.event is not None
                        r.event.clear()
                    await asyncio.wait(
                        [asyncio.ensure_future(r.event.wait()) for r in (rs, rc) if r.event],
                        return_when=asyncio.FIRST_COMPLETED,
                    )

        await until(lambda: server.state is TransportState.CONNECTED and client.state is TransportState.CONNECTED)
        assert server.remote_address == client_ep.local_address
        for i in range(10):
            assert client.send_rtp(rtp(i))
            assert server.send_rtp(rtp(100 + i, ssrc=5))
        assert client.send_rtcp(rtcp_rr()) and server.send_rtcp(rtcp_rr(5))
        await until(lambda: len(rs.rtp) == 10 and len(rc.rtp) == 10 and rs.rtcp and rc.rtcp)
        assert rs.rtp == [rtp(i) for i in range(10)]
        assert rc.rtp == [rtp(100 + i, ssrc=5) for i in range(10)]
        assert rs.rtcp == [rtcp_rr()] and rc.rtcp == [rtcp_rr(5)]
        assert not stats.drops

        client.close("done")
        await until(lambda: server.state is TransportState.CLOSED)
        assert rs.states[-1] == (TransportState.CLOSED, "dtls_closed")
        assert server_ep.transports == [] and client_ep.transports == []
    finally:
        client_ep.close()
        server_ep.close()


class Exploding(Recorder):
    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        super().on_rtp(transport, data, now=now)
        if len(self.rtp) == 1:
            raise RuntimeError("a bug in the forwarding core")


async def test_a_raising_listener_does_not_take_the_shared_socket_down(caplog: pytest.LogCaptureFixture) -> None:
    stats = MediaStats()
    server_ep = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    client_ep = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    try:
        rs, rc = Exploding(event=asyncio.Event()), Recorder()
        server = server_ep.create_transport(rs)
        client = client_ep.create_transport(rc, role="client")
        server.set_remote(ice_ufrag=client.ice_ufrag, ice_pwd=client.ice_pwd, fingerprints=[client.fingerprint])
        client.set_remote(ice_ufrag=server.ice_ufrag, ice_pwd=server.ice_pwd, fingerprints=[server.fingerprint])
        client_ep.connect(client, server_ep.local_address)
        assert rs.event is not None
        async with asyncio.timeout(5):
            while client.state is not TransportState.CONNECTED or len(rs.rtp) < 2:
                if client.state is TransportState.CONNECTED:
                    client.send_rtp(rtp(len(rs.rtp)))
                rs.event.clear()
                await asyncio.wait([asyncio.ensure_future(rs.event.wait())], timeout=0.05)
        assert rs.rtp[:2] == [rtp(0), rtp(1)]
        assert "datagram handling failed" in caplog.text
    finally:
        client_ep.close()
        server_ep.close()


async def test_endpoint_counts_unattributable_datagrams() -> None:
    stats = MediaStats()
    ep = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    garbage = {
        DropReason.NOT_WEBRTC: b"\xff" * 20,
        DropReason.UNKNOWN_ADDRESS: b"\x80" * 20,  # SRTP from an address no check validated
        DropReason.STUN_MALFORMED: b"\x00\x01" + b"\x00" * 30,
        DropReason.STUN_UNKNOWN_USERNAME: _binding_request("nobody:x"),
    }
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("10.77.0.2", 0))
        for data in garbage.values():
            sock.sendto(data, ep.local_address)
            sock.sendto(b"\x17" * 20, ep.local_address)  # DTLS from a stranger
        async with asyncio.timeout(5):
            while sum(stats.drops.values()) < 2 * len(garbage):
                await asyncio.sleep(0.005)
        assert stats.drops == {**{reason: 1 for reason in garbage}, DropReason.UNKNOWN_ADDRESS: 1 + len(garbage)}
    finally:
        sock.close()
        ep.close()


def _binding_request(username: str) -> bytes:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.add_message_integrity(b"whatever")
    return bytes(message)
