from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription as AiortcSdp

from sfu.params import ConsumerParams, Encoding, HeaderExtension, MediaKind
from signalling.sdp import SdpError, parse_publish_offer, parse_subscribe_answer
from signalling.sdp_writer import (
    SUBSCRIBER_CODECS,
    SUBSCRIBER_EXTENSIONS,
    LocalTransport,
    SubscribeSlot,
    write_publish_answer,
    write_subscribe_offer,
)

FIXTURES = Path(__file__).parent / "fixtures"
CHROME = (FIXTURES / "chrome120_simulcast_offer.sdp").read_bytes().decode()
AIORTC = (FIXTURES / "aiortc_offer.sdp").read_bytes().decode()
LOCAL = LocalTransport(
    ice_ufrag="srvUfrag1",
    ice_pwd="serverpasswordserverpassword",
    fingerprint=("sha-256", ":".join(["AB"] * 32)),
    candidates=(("10.77.0.1", 40000),),
)


def test_chrome_simulcast_offer() -> None:
    offer = parse_publish_offer(CHROME)
    assert offer.transport.ice_ufrag == "Zq3T" and offer.transport.setup == "actpass"
    audio, video = offer.producers
    assert (audio.kind, audio.mid, audio.cname) == (MediaKind.AUDIO, "0", "Jq7vXkR2mW9pLs4T")
    assert audio.codecs[0].mime == "audio/opus" and audio.codecs[0].payload_type == 111
    assert audio.codecs[0].rtcp_feedback == ("transport-cc",)
    assert audio.encodings == (Encoding(ssrc=3735928559),)
    assert audio.header_extensions == {
        HeaderExtension.AUDIO_LEVEL: 1, HeaderExtension.ABS_SEND_TIME: 2,
        HeaderExtension.TRANSPORT_CC: 3, HeaderExtension.MID: 4,
    }
    vp8 = video.codecs[0]
    assert (vp8.mime, vp8.payload_type, vp8.rtx_payload_type) == ("video/VP8", 96, 97)
    assert vp8.rtcp_feedback == ("transport-cc", "nack", "nack pli", "ccm fir")
    assert [e.rid for e in video.encodings] == ["q", "h", "f"]
    assert video.header_extensions[HeaderExtension.RID] == 10
    assert video.header_extensions[HeaderExtension.REPAIRED_RID] == 11
    assert offer.sections[2].rejected  # the data channel


@pytest.mark.parametrize(("pref", "mime", "pt", "rtx"), [("VP8", "video/VP8", 96, 97), ("H264", "video/H264", 106, 107)])
def test_video_codec_preference(pref: str, mime: str, pt: int, rtx: int) -> None:
    codec = parse_publish_offer(CHROME, video_codec=pref).producers[1].codecs[0]
    assert (codec.mime, codec.payload_type, codec.rtx_payload_type) == (mime, pt, rtx)
    if mime == "video/H264":
        assert "packetization-mode=1" in codec.fmtp and "42e01f" in codec.fmtp


def test_aiortc_offer() -> None:
    offer = parse_publish_offer(AIORTC)
    audio, video = offer.producers
    assert audio.codecs[0].payload_type == 96 and audio.codecs[0].channels == 2
    assert video.encodings == (Encoding(ssrc=588584199, rtx_ssrc=740230027),)
    assert video.codecs[0].rtcp_feedback == ("nack", "nack pli")
    assert offer.transport.fingerprints[0][0] == "sha-256"


def test_publish_answer_has_what_chrome_needs() -> None:
    offer = parse_publish_offer(CHROME)
    sdp = write_publish_answer(offer, LOCAL, session_id=42)
    assert sdp.endswith("\r\n") and "\n" not in sdp.replace("\r\n", "")
    for needle in [
        "a=ice-lite", "a=group:BUNDLE 0 1\r\n", "a=setup:passive", "a=ice-ufrag:srvUfrag1",
        f"a=fingerprint:sha-256 {LOCAL.fingerprint[1]}", "a=candidate:1 1 udp", "10.77.0.1 40000 typ host",
        "a=end-of-candidates", "a=rtcp-mux", "a=recvonly", "a=rid:q recv", "a=rid:f recv",
        "a=simulcast:recv q;h;f", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 ccm fir",
        "a=fmtp:97 apt=96", "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
    ]:
        assert needle in sdp, needle
    assert "toffset" not in sdp and "VP9" not in sdp
    parsed = AiortcSdp.parse(sdp)
    assert parsed.media[0].ice.iceLite and parsed.media[1].dtls.role == "server"
    assert [c.mimeType for c in parsed.media[1].rtp.codecs] == ["video/VP8", "video/rtx"]


def consumer(kind: MediaKind, ssrc: int) -> ConsumerParams:
    mime = "audio/opus" if kind is MediaKind.AUDIO else "video/VP8"
    return ConsumerParams(kind=kind, mid="x", codec=SUBSCRIBER_CODECS[mime], ssrc=ssrc,
                          rtx_ssrc=ssrc + 1 if kind is MediaKind.VIDEO else None,
                          header_extensions=SUBSCRIBER_EXTENSIONS[kind], cname="p1")


SLOTS = [
    SubscribeSlot("0", MediaKind.AUDIO, consumer(MediaKind.AUDIO, 1000), "p1", "tr_a"),
    SubscribeSlot("1", MediaKind.VIDEO, consumer(MediaKind.VIDEO, 2000), "p1", "tr_v"),
    SubscribeSlot("2", MediaKind.VIDEO),  # a track that went away
]


def test_subscribe_offer_parses_in_aiortc() -> None:
    sdp = write_subscribe_offer(SLOTS, LOCAL, session_id=1, version=3)
    assert sdp.endswith("\r\n")
    for needle in ["a=setup:actpass", "a=sendonly", "a=msid:p1 tr_v", "a=ssrc-group:FID 2000 2001",
                   "a=ssrc:2001 cname:p1", "a=inactive", "a=group:BUNDLE 0 1 2", "a=rtpmap:111 opus/48000/2",
                   "a=fmtp:111 minptime=10;useinbandfec=1", "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                   "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=rtcp-fb:96 nack pli"]:
        assert needle in sdp, needle
    parsed = AiortcSdp.parse(sdp)
    assert [m.direction for m in parsed.media] == ["sendonly", "sendonly", "inactive"]
    assert parsed.media[1].ssrc_group[0].items == [2000, 2001]


async def test_aiortc_accepts_answer_and_offer() -> None:
    """A real aiortc peer takes our publish answer, and answers our subscribe offer as `active`."""
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
        publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = parse_publish_offer(publisher.localDescription.sdp)
        answer = write_publish_answer(offer, LOCAL, session_id=7)
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        assert publisher.signalingState == "stable"

        sdp = write_subscribe_offer(SLOTS, LOCAL, session_id=1, version=1)
        await subscriber.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        parsed = parse_subscribe_answer(subscriber.localDescription.sdp, ["0", "1", "2"])
        assert parsed.transport.setup == "active" and parsed.transport.fingerprints
    finally:
        await publisher.close()
        await subscriber.close()


def _break(sdp: str, old: str, new: str) -> str:
    assert old in sdp
    return sdp.replace(old, new)


@pytest.mark.parametrize(
    ("sdp", "why"),
    [
        ("", "empty"),
        ("hello", "not sdp"),
        (_break(CHROME, "v=0", "v=1"), "version"),
        (_break(CHROME, "a=ice-ufrag:Zq3T\r\n", ""), "no ufrag"),
        (_break(CHROME, "a=fingerprint:sha-256", "a=fingerprint:sha-1"), "no sha-256"),
        (_break(CHROME, "a=rtcp-mux\r\n", ""), "no rtcp-mux"),
        (_break(CHROME, "a=setup:actpass", "a=setup:passive"), "passive"),
        (_break(CHROME, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 foo/48000/2"), "no opus"),
        (_break(CHROME, "a=rid:h send\r\n", ""), "simulcast rid undeclared"),
        (_break(CHROME, "a=mid:1", "a=mid:0"), "duplicate mid"),
        (_break(CHROME, "a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0"), "not bundled"),
        (_break(CHROME, "a=ssrc:3735928559 cname", "a=ssrc:99999999999 cname"), "ssrc overflow"),
        (_break(CHROME, "a=rtpmap:96 VP8/90000", "a=rtpmap:300 VP8/90000"), "pt range"),
        (_break(CHROME, "a=extmap:4 urn", "a=extmap:999 urn"), "extmap id"),
        (_break(CHROME, "m=video 9 UDP", "m=video x UDP"), "port"),
    ],
)
def test_invalid_offers(sdp: str, why: str) -> None:
    with pytest.raises(SdpError):
        parse_publish_offer(sdp)


@pytest.mark.parametrize(
    ("mutate", "mids"),
    [
        (lambda s: s.replace("a=setup:active", "a=setup:passive"), ["0", "1", "2"]),
        (lambda s: s, ["0", "1"]),
        (lambda s: s.replace("a=ice-pwd:", "a=x-ice-pwd:"), ["0", "1", "2"]),
    ],
)
def test_invalid_subscribe_answers(mutate: object, mids: list[str]) -> None:
    answer = write_subscribe_offer(SLOTS, LOCAL, session_id=1, version=1).replace("a=setup:actpass", "a=setup:active")
    assert parse_subscribe_answer(answer, ["0", "1", "2"]).transport.setup == "active"
    with pytest.raises(SdpError):
        parse_subscribe_answer(mutate(answer), mids)  # type: ignore[operator]
