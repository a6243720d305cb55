"""Interop with a real WebRTC stack: aiortc's ICE (aioice, controlling, full) + DTLS client + SRTP against
our ICE-lite DTLS-server transport on a real UDP socket. ORTC objects, no SDP, no STUN servers."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
)

from sfu.stats import MediaStats
from sfu.transport import TransportState, WebRtcTransport
from sfu.udp import UdpEndpoint
from tests.netns import HOST_ADDR

pytestmark = pytest.mark.integration


def rtp(seq: int, ssrc: int, payload: bytes = b"\x42" * 200) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, 960 * seq, ssrc) + payload


def rtcp_rr(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


@dataclass
class Recorder:
    rtp: list[bytes] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)
    states: list[tuple[TransportState, str | None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.rtp.append(data)
        self.changed.set()

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.rtcp.append(data)
        self.changed.set()

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None:
        self.states.append((state, reason))
        self.changed.set()


async def wait_for(event: asyncio.Event, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            event.clear()
            await event.wait()


async def test_aiortc_controlling_peer_connects_and_exchanges_srtp_both_ways() -> None:
    stats = MediaStats()
    endpoint = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    ours = Recorder()
    server = endpoint.create_transport(ours)

    gatherer = RTCIceGatherer(iceServers=[])
    ice = RTCIceTransport(gatherer)
    certificate = RTCCertificate.generateCertificate()
    dtls = RTCDtlsTransport(ice, [certificate])
    theirs: list[bytes] = []
    theirs_rtcp: list[bytes] = []
    arrived = asyncio.Event()

    # Tap aiortc's decrypted-packet handlers: the bytes as its SRTP layer produced them.
    async def tap_rtp(data: bytes, arrival_time_ms: int) -> None:
        theirs.append(data)
        arrived.set()

    async def tap_rtcp(data: bytes) -> None:
        theirs_rtcp.append(data)
        arrived.set()

    dtls._handle_rtp_data = tap_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = tap_rtcp  # type: ignore[method-assign]
    try:
        await gatherer.gather()
        local = gatherer.getLocalParameters()
        server.set_remote(
            ice_ufrag=local.usernameFragment or "",
            ice_pwd=local.password or "",
            fingerprints=[(f.algorithm, f.value) for f in certificate.getFingerprints()],
        )
        host, port = endpoint.local_address
        await ice.addRemoteCandidate(
            RTCIceCandidate(
                component=1, foundation="sfu", ip=host, port=port, priority=2130706431, protocol="udp", type="host"
            )
        )
        await ice.addRemoteCandidate(None)
        ice._connection.ice_controlling = True  # as RTCPeerConnection does for the offerer; we are lite
        dtls._set_role("client")  # we answer a=setup:passive

        await ice.start(RTCIceParameters(usernameFragment=server.ice_ufrag, password=server.ice_pwd, iceLite=True))
        assert ice.state == "completed"
        await dtls.start(RTCDtlsParameters(fingerprints=[RTCDtlsFingerprint(*server.fingerprint)], role="server"))
        assert dtls.state == "connected"
        await wait_for(ours.changed, lambda: server.state is TransportState.CONNECTED)
        assert server.remote_address is not None and server.remote_address[0] in ("10.77.0.1", "10.77.0.2")

        for seq in range(20):
            await dtls._send_rtp(rtp(seq, ssrc=1111))
        await dtls._send_rtp(rtcp_rr(1111))
        await wait_for(ours.changed, lambda: len(ours.rtp) == 20 and len(ours.rtcp) == 1)
        assert ours.rtp == [rtp(seq, 1111) for seq in range(20)]
        assert ours.rtcp == [rtcp_rr(1111)]

        for seq in range(20):
            assert server.send_rtp(rtp(1000 + seq, ssrc=2222))
        assert server.send_rtcp(rtcp_rr(2222))
        await wait_for(arrived, lambda: len(theirs) == 20 and len(theirs_rtcp) == 1)
        assert theirs == [rtp(1000 + seq, 2222) for seq in range(20)]
        assert theirs_rtcp == [rtcp_rr(2222)]
        assert server.srtp_profile in ("AEAD_AES_128_GCM", "AES128_CM_HMAC_SHA1_80")
        assert not stats.drops, stats.drops

        # aiortc closing DTLS (close_notify) closes our transport with a reason.
        await dtls.stop()
        await wait_for(ours.changed, lambda: server.state is TransportState.CLOSED)
        assert ours.states[-1] == (TransportState.CLOSED, "dtls_closed")
        assert endpoint.transports == []
    finally:
        await dtls.stop()
        await ice.stop()
        endpoint.close()


async def test_aiortc_with_the_wrong_fingerprint_is_refused() -> None:
    stats = MediaStats()
    endpoint = await UdpEndpoint.create(HOST_ADDR, 0, stats=stats)
    ours = Recorder()
    server = endpoint.create_transport(ours)
    gatherer = RTCIceGatherer(iceServers=[])
    ice = RTCIceTransport(gatherer)
    dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    impostor = RTCCertificate.generateCertificate()  # signalling announced a different certificate
    try:
        await gatherer.gather()
        local = gatherer.getLocalParameters()
        server.set_remote(
            ice_ufrag=local.usernameFragment or "",
            ice_pwd=local.password or "",
            fingerprints=[(f.algorithm, f.value) for f in impostor.getFingerprints()],
        )
        host, port = endpoint.local_address
        await ice.addRemoteCandidate(
            RTCIceCandidate(
                component=1, foundation="sfu", ip=host, port=port, priority=2130706431, protocol="udp", type="host"
            )
        )
        await ice.addRemoteCandidate(None)
        ice._connection.ice_controlling = True
        dtls._set_role("client")
        await ice.start(RTCIceParameters(usernameFragment=server.ice_ufrag, password=server.ice_pwd, iceLite=True))
        start = asyncio.ensure_future(
            dtls.start(RTCDtlsParameters(fingerprints=[RTCDtlsFingerprint(*server.fingerprint)], role="server"))
        )
        await wait_for(ours.changed, lambda: server.state is TransportState.CLOSED)
        assert ours.states[-1] == (TransportState.CLOSED, "dtls_fingerprint_mismatch")
        assert stats.dtls_failures == 1
        start.cancel()
    finally:
        await dtls.stop()
        await ice.stop()
        endpoint.close()
