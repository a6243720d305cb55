"""The media plane on real sockets, without signalling: client-role transports publish and subscribe.

Each test builds a MediaServer on the test namespace's address, connects our own client-role transports
(ICE controlling, DTLS client, SRTP) to it, and checks what arrives at the packet level: rewritten SSRC and
payload type, continuous sequence numbers, keyframe requests reaching the publisher, NACKs answered.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from sfu import rtcp, vp8
from sfu.params import Codec, ConsumerParams, Encoding, HeaderExtension, MediaKind, ProducerParams
from sfu.rtp import EgressWriter, ExtIds, RtpPacket, parse_rtp
from sfu.server import MediaConfig, MediaServer
from sfu.stats import DropReason, MediaStats
from sfu.transport import TransportState, WebRtcTransport
from sfu.udp import UdpEndpoint
from signalling.media_events import PublishedTrackEvents
from tests.netns import HOST_ADDR, PEER_ADDR

pytestmark = pytest.mark.integration

VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97,
            rtcp_feedback=("nack", "nack pli", "ccm fir", "transport-cc"))
OPUS = Codec("audio/opus", 111, 48000, channels=2, rtcp_feedback=("transport-cc",))
TCC = {HeaderExtension.TRANSPORT_CC: 3}


class Peer:
    """A client-role transport on its own socket that records what it receives."""

    def __init__(self, endpoint: UdpEndpoint) -> None:
        self.endpoint = endpoint
        self.rtp: list[RtpPacket] = []
        self.rtcp: list[rtcp.RtcpPacket] = []
        self.connected = asyncio.Event()
        self.transport = endpoint.create_transport(self, role="client")

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.rtp.append(parse_rtp(data, ExtIds.from_map(TCC)))

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.rtcp.extend(rtcp.parse_compound(data)[0])

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None:
        if state is TransportState.CONNECTED:
            self.connected.set()


async def connect_peer(server: MediaServer, closed: list[str]) -> tuple[Peer, WebRtcTransport]:
    endpoint = await UdpEndpoint.create(PEER_ADDR, 0, stats=MediaStats())
    peer = Peer(endpoint)
    server_side = server.create_transport(on_closed=closed.append)
    peer.transport.set_remote(ice_ufrag=server_side.ice_ufrag, ice_pwd=server_side.ice_pwd,
                              fingerprints=[server_side.fingerprint])
    server_side.set_remote(ice_ufrag=peer.transport.ice_ufrag, ice_pwd=peer.transport.ice_pwd,
                           fingerprints=[peer.transport.fingerprint])
    endpoint.connect(peer.transport, server.candidates[0])
    await asyncio.wait_for(peer.connected.wait(), 5)
    return peer, server_side


def vp8_payload(picture_id: int, keyframe: bool, size: int = 600) -> bytes:
    # X=1, S=1, PID=0; I=1 with a 15-bit picture id; then the VP8 payload header (P bit 0 = keyframe).
    descriptor = bytes([0x90, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
    header = bytes([0x00 if keyframe else 0x01, 0, 0])
    return descriptor + header + bytes(size)


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def server():  # type: ignore[no-untyped-def]
    srv = MediaServer(MediaConfig(host=HOST_ADDR, port=0), rng=random.Random(7))
    await srv.start()
    yield srv
    await srv.close()


async def test_video_is_forwarded_with_rewritten_headers_to_every_subscriber(server: MediaServer) -> None:
    closed: list[str] = []
    pub, pub_t = await connect_peer(server, closed)
    subs = [await connect_peer(server, closed) for _ in range(3)]
    router = server.create_router()
    producer = router.add_producer(pub_t, ProducerParams(
        kind=MediaKind.VIDEO, mid="1", codecs=(VP8,), header_extensions=dict(TCC),
        encodings=(Encoding(ssrc=1111, rtx_ssrc=2222),)))
    consumers = [router.add_consumer(t, producer, ConsumerParams(
        kind=MediaKind.VIDEO, mid="0", codec=VP8, ssrc=5000 + i, rtx_ssrc=6000 + i, header_extensions=dict(TCC)))
        for i, (_, t) in enumerate(subs)]

    writer = EgressWriter(1111, 96, transport_cc_id=3)
    first_seq = 65530  # wraps during the test
    for i in range(40):
        pub.transport.send_rtp(writer.build(marker=True, seq=first_seq + i, ts=1000 + 3000 * i, tcc_seq=i,
                                            payload=vp8_payload(100 + i, keyframe=i == 0)))
        await asyncio.sleep(0.002)
    await wait_for(lambda: all(len(p.rtp) == 40 for p, _ in subs))

    for (peer, _), consumer in zip(subs, consumers):
        assert {p.ssrc for p in peer.rtp} == {consumer.ssrc}
        assert {p.pt for p in peer.rtp} == {96}
        seqs = [p.seq for p in peer.rtp]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        tss = [p.ts for p in peer.rtp]
        assert all((b - a) & 0xFFFFFFFF == 3000 for a, b in itertools.pairwise(tss))
        tcc = [p.tcc_seq for p in peer.rtp]
        assert None not in tcc and len(set(tcc)) == 40  # our own transport-wide numbering
    assert server.stats.packets_forwarded["video"] == 120
    # A new subscriber made the SFU ask the publisher for a keyframe.
    await wait_for(lambda: any(isinstance(p, rtcp.Pli) and p.media_ssrc == 1111 for p in pub.rtcp))
    assert closed == []


async def test_nack_from_subscriber_is_answered_with_rtx(server: MediaServer) -> None:
    closed: list[str] = []
    pub, pub_t = await connect_peer(server, closed)
    sub, sub_t = await connect_peer(server, closed)
    router = server.create_router()
    producer = router.add_producer(pub_t, ProducerParams(
        kind=MediaKind.VIDEO, mid="1", codecs=(VP8,), header_extensions=dict(TCC),
        encodings=(Encoding(ssrc=1111, rtx_ssrc=2222),)))
    consumer = router.add_consumer(sub_t, producer, ConsumerParams(
        kind=MediaKind.VIDEO, mid="0", codec=VP8, ssrc=5000, rtx_ssrc=6000, header_extensions=dict(TCC)))
    writer = EgressWriter(1111, 96, transport_cc_id=3)
    for i in range(10):
        pub.transport.send_rtp(writer.build(marker=True, seq=100 + i, ts=3000 * i, tcc_seq=i,
                                            payload=vp8_payload(i, keyframe=i == 0)))
    await wait_for(lambda: len(sub.rtp) == 10)
    wanted = sub.rtp[4]
    sub.transport.send_rtcp(bytes(rtcp.Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=(wanted.seq,))))
    await wait_for(lambda: any(p.ssrc == 6000 for p in sub.rtp))
    rtx = next(p for p in sub.rtp if p.ssrc == 6000)
    assert rtx.pt == 97
    assert rtx.data[rtx.payload_offset : rtx.payload_offset + 2] == wanted.seq.to_bytes(2, "big")
    assert rtx.data[rtx.payload_offset + 2 : rtx.payload_end] == wanted.data[wanted.payload_offset : wanted.payload_end]
    assert server.stats.retransmissions_sent == 1


async def test_simulcast_layer_switch_waits_for_keyframe_and_keeps_sequence_continuous(server: MediaServer) -> None:
    closed: list[str] = []
    pub, pub_t = await connect_peer(server, closed)
    sub, sub_t = await connect_peer(server, closed)
    router = server.create_router()
    producer = router.add_producer(pub_t, ProducerParams(
        kind=MediaKind.VIDEO, mid="1", codecs=(VP8,), header_extensions=dict(TCC),
        encodings=(Encoding(rid="q", ssrc=10), Encoding(rid="h", ssrc=20), Encoding(rid="f", ssrc=30))))
    consumer = router.add_consumer(sub_t, producer, ConsumerParams(
        kind=MediaKind.VIDEO, mid="0", codec=VP8, ssrc=5000, header_extensions=dict(TCC)))
    consumer.pin_layer(0)
    writers = {ssrc: EgressWriter(ssrc, 96, transport_cc_id=3) for ssrc in (10, 20, 30)}
    tcc = 0

    async def send_round(i: int, keyframe_layers: set[int]) -> None:
        nonlocal tcc
        for layer, ssrc in enumerate((10, 20, 30)):
            tcc += 1
            pub.transport.send_rtp(writers[ssrc].build(
                marker=True, seq=1000 * (layer + 1) + i, ts=90000 * layer + 3000 * i, tcc_seq=tcc,
                payload=vp8_payload(500 * layer + i, keyframe=layer in keyframe_layers)))
        await asyncio.sleep(0.003)

    await send_round(0, {0, 1, 2})
    for i in range(1, 10):
        await send_round(i, set())
    await wait_for(lambda: len(sub.rtp) == 10)
    consumer.pin_layer(2)
    consumer.update_layer(now=server.now())
    for i in range(10, 15):
        await send_round(i, set())  # no keyframe on layer 2 yet: the subscriber keeps getting layer 0
    await send_round(15, {2})
    for i in range(16, 20):
        await send_round(i, set())
    # Rounds 0-15 of layer 0 (layer 0 goes first in round 15), then rounds 15-19 of layer 2.
    await wait_for(lambda: len(sub.rtp) == 21)
    seqs = [p.seq for p in sub.rtp]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    # Picture ids stay continuous across the switch, as the decoder expects.
    pids = [vp8.parse_descriptor(p.data[p.payload_offset : p.payload_end]).picture_id for p in sub.rtp]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(pids))
    assert server.stats.drops[DropReason.WAITING_FOR_KEYFRAME] >= 5
    assert consumer.current_layer == 2


async def test_rtp_from_an_unknown_ssrc_is_a_counted_drop(server: MediaServer) -> None:
    closed: list[str] = []
    pub, pub_t = await connect_peer(server, closed)
    router = server.create_router()
    router.add_producer(pub_t, ProducerParams(kind=MediaKind.AUDIO, mid="0", codecs=(OPUS,),
                                              header_extensions=dict(TCC), encodings=(Encoding(ssrc=77),)))
    pub.transport.send_rtp(EgressWriter(4242, 111).build(marker=False, seq=1, ts=1, payload=b"\x01" * 40))
    await wait_for(lambda: server.stats.drops[DropReason.UNKNOWN_SSRC] == 1)


async def test_publisher_gets_transport_wide_feedback(server: MediaServer) -> None:
    closed: list[str] = []
    pub, pub_t = await connect_peer(server, closed)
    router = server.create_router()
    router.add_producer(pub_t, ProducerParams(kind=MediaKind.AUDIO, mid="0", codecs=(OPUS,),
                                              header_extensions=dict(TCC), encodings=(Encoding(ssrc=77),)))
    writer = EgressWriter(77, 111, transport_cc_id=3)
    for i in range(20):
        pub.transport.send_rtp(writer.build(marker=False, seq=i, ts=960 * i, tcc_seq=500 + i, payload=b"\x01" * 60))
        await asyncio.sleep(0.005)

    def reported() -> set[int]:
        return {seq for p in pub.rtcp if isinstance(p, rtcp.TransportCc) for seq, delta in p.packets
                if delta is not None}

    await wait_for(lambda: reported() >= set(range(500, 520)), timeout=2)


def keyframe_payload(picture_id: int, width: int, height: int) -> bytes:
    """A key frame's first packet whose VP8 header carries its resolution (RFC 6386 section 9.1)."""
    descriptor = bytes([0x90, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
    header = b"\x50\x2d\x01\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return descriptor + header + bytes(600)


async def test_video_preference_moves_the_subscriber_down_and_dynacast_pauses_unwanted_layers(
    server: MediaServer,
) -> None:
    closed: list[str] = []
    pub, pub_t = await connect_peer(server, closed)
    sub, sub_t = await connect_peer(server, closed)
    router = server.create_router()
    told: list[tuple[float, dict[str, object]]] = []
    producer = router.add_producer(pub_t, ProducerParams(
        kind=MediaKind.VIDEO, mid="1", codecs=(VP8,), header_extensions=dict(TCC),
        encodings=(Encoding(rid="q", ssrc=10), Encoding(rid="h", ssrc=20), Encoding(rid="f", ssrc=30))),
        PublishedTrackEvents(lambda m: told.append((server.now(), m)), "tr_pub"))
    consumer = router.add_consumer(sub_t, producer, ConsumerParams(
        kind=MediaKind.VIDEO, mid="0", codec=VP8, ssrc=5000, header_extensions=dict(TCC)))
    sizes = {10: (320, 180), 20: (640, 360), 30: (1280, 720)}
    writers = {ssrc: EgressWriter(ssrc, 96, transport_cc_id=3) for ssrc in sizes}
    active = {10: True, 20: True, 30: True}  # what the publisher encodes, as it obeys layers_wanted

    async def publish() -> None:
        for i in itertools.count():
            for layer, (ssrc, (w, h)) in enumerate(sizes.items()):
                if not active[ssrc]:
                    continue
                pid = 500 * layer + i
                payload = keyframe_payload(pid, w, h) if i % 10 == 0 else vp8_payload(pid, False)
                pub.transport.send_rtp(writers[ssrc].build(marker=True, seq=1000 * layer + i, ts=3000 * i,
                                                           tcc_seq=3 * i + layer, payload=payload))
            await asyncio.sleep(0.03)

    def received_sizes() -> list[tuple[int, int] | None]:
        return [vp8.keyframe_size(p.data[p.payload_offset : p.payload_end]) for p in sub.rtp]

    sender = asyncio.create_task(publish())
    try:
        # No preference: the highest layer, whose keyframes say 1280x720.
        await wait_for(lambda: (1280, 720) in received_sizes(), timeout=5)
        assert producer.layer_sizes() == [(320, 180), (640, 360), (1280, 720)]  # measured, not assumed
        # A 400x225 tile needs 640x360: the subscriber moves to h at its next keyframe.
        mark = len(sub.rtp)
        started = server.now()
        consumer.set_preference((400, 225), visible=True, now=started)
        await wait_for(lambda: (640, 360) in received_sizes()[mark:], timeout=3)
        switched = next(i for i, s in enumerate(received_sizes()) if i >= mark and s == (640, 360))
        assert all(s in (None, (640, 360)) for s in received_sizes()[switched:])
        assert {p.ssrc for p in sub.rtp} == {5000}  # one stream for the subscriber across the switch
        # Nobody wants f any more: after 5 s of flowing unwanted the publisher is told to stop it.
        await wait_for(lambda: bool(told), timeout=8)
        at, message = told[0]
        assert message == {"type": "layers_wanted", "track_id": "tr_pub", "layers": ["q", "h"],
                           "active": [True, True, False]}
        assert 5.0 <= at - started <= 6.5, at - started
        active[30] = False
        # A full-screen view wants f again: resumed at once (no debounce), and forwarded once it flows.
        mark = len(sub.rtp)
        consumer.set_preference((1920, 1080), visible=True, now=server.now())
        assert told[-1][1]["layers"] == ["q", "h", "f"]
        active[30] = True
        await wait_for(lambda: (1280, 720) in received_sizes()[mark:], timeout=3)
        # Hidden: the subscriber gets no video and hears why; only q stays wanted after the delay.
        consumer.set_preference(None, visible=False, now=server.now())
        assert consumer.paused and consumer.pause_reason.value == "not_visible"
        mark = len(sub.rtp)
        await asyncio.sleep(0.3)
        assert len(sub.rtp) == mark
    finally:
        sender.cancel()
    assert closed == []
