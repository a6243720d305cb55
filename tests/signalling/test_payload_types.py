"""Each video m-section of a subscribe connection has its own payload types, kept while it lives.

A receiver that routes RTP by payload type (aiortc) can only route RTX whose PT belongs to one section.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.media import Clip
from client.protocol import SignallingClient
from client.replay import ReplayParticipant
from signalling.payload_types import PayloadTypes
from signalling.sdp import parse_sdp
from signalling.sdp_writer import AUDIO_PAYLOAD_TYPES, SUBSCRIBER_CODECS
from tests.signalling.conftest import Server

VP8, H264, OPUS = SUBSCRIBER_CODECS["video/VP8"], SUBSCRIBER_CODECS["video/H264"], SUBSCRIBER_CODECS["audio/opus"]
AIORTC_OFFER = (Path(__file__).parent / "fixtures" / "aiortc_offer.sdp").read_bytes().decode()


def pair(codec: Any) -> tuple[int, int]:
    return codec.payload_type, codec.rtx_payload_type


def test_video_sections_get_distinct_pairs_and_audio_keeps_its_pt() -> None:
    pts = PayloadTypes(reserved=set(AUDIO_PAYLOAD_TYPES))
    assert pts.assign(OPUS, set()) == OPUS
    pairs = [pair(pts.assign(codec, set())) for codec in (VP8, H264, VP8, VP8)]
    used = [pt for p in pairs for pt in p]
    assert len(set(used)) == len(used) == 8
    assert not set(used) & set(AUDIO_PAYLOAD_TYPES)
    # Dynamic range first (RFC 3551 section 6), never 64-95 (RFC 5761 section 4: rtcp-mux).
    assert all(96 <= pt <= 127 for pt in used)


def test_when_the_pool_runs_out_pairs_are_reused_by_codec_preferring_free_ones() -> None:
    pts = PayloadTypes(reserved=set(AUDIO_PAYLOAD_TYPES))
    pairs = [pair(pts.assign(VP8, set())) for _ in range(30)]
    assert len(set(pairs)) == 30
    assert all(not 64 <= pt <= 95 for p in pairs for pt in p)
    live = set(pairs) - {pairs[7]}
    assert pair(pts.assign(VP8, live)) == pairs[7]  # the only VP8 pair no live section holds
    assert pair(pts.assign(VP8, set(pairs))) in set(pairs)  # all live: shares one, still means VP8
    with pytest.raises(ValueError):
        pts.assign(H264, set())  # every PT means VP8 on this connection: H.264 would collide in the bundle


def video_pts(sdp: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """mid -> (direction, fmts) of each video m-section."""
    return {m.mid or "": (m.direction, tuple(m.fmts)) for m in parse_sdp(sdp).media if m.kind == "video"}


async def test_subscribe_offers_keep_distinct_video_pts_per_section_across_renegotiation(server: Server) -> None:
    room = await server.room("family", waiting_room=False)
    subscriber = await server.client()
    await subscriber.join(server.token(room, "sub", "therapist"), room_id=room)
    media = ReplayParticipant(Clip(30, 0, 0, (), ()), host="127.0.0.1")  # a real ICE/DTLS subscribe link
    offers: list[dict[str, Any]] = []

    async def answer_until(done: Any) -> None:
        while not offers or not done(offers[-1]):
            offer = await subscriber.next_event("offer", timeout=10)
            offers.append(offer)
            await subscriber.answer(offer["offer_id"], await media.subscribe_answer(offer["sdp"]))

    def active_videos(offer: dict[str, Any]) -> int:
        return sum(1 for d, _ in video_pts(offer["sdp"]).values() if d == "sendonly")

    publishers: list[SignallingClient] = []
    try:
        for i in range(3):
            p = await server.client()
            await p.join(server.token(room, f"pub{i}", "client"), room_id=room)
            await p.publish(AIORTC_OFFER)
            publishers.append(p)
        await asyncio.wait_for(answer_until(lambda o: active_videos(o) == 3), 30)
        await publishers.pop(1).leave()  # its sections go inactive, in place (not the first: 96/97 is a default)
        await asyncio.wait_for(answer_until(lambda o: active_videos(o) == 2), 30)
        p = await server.client()
        await p.join(server.token(room, "pub3", "client"), room_id=room)
        await p.publish(AIORTC_OFFER)
        publishers.append(p)
        await asyncio.wait_for(answer_until(lambda o: active_videos(o) == 3 and len(video_pts(o["sdp"])) == 4), 30)
    finally:
        for p in publishers:
            await p.close()
        await subscriber.close()
        await media.close()

    seen: dict[str, tuple[str, ...]] = {}
    for offer in offers:
        sections = video_pts(offer["sdp"])
        fmts = [f for _, fs in sections.values() for f in fs]
        assert len(fmts) == len(set(fmts)) == 2 * len(sections), sections  # no PT shared by two sections
        for mid, (_, fs) in sections.items():
            assert seen.setdefault(mid, fs) == fs, (mid, fs, seen[mid])  # a section keeps its PTs
        for m in parse_sdp(offer["sdp"]).media:
            if m.kind == "audio":
                assert m.fmts == ["111"]
    last = video_pts(offers[-1]["sdp"])
    assert [d for d, _ in last.values()] == ["sendonly", "inactive", "sendonly", "sendonly"]
