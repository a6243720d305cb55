"""SDP we produce: the answer to a publisher's offer and the SFU's offer on a subscribe connection.

Both describe an ICE-lite server with host candidates only (RFC 8445 section 2.5), BUNDLE (RFC 8843) and
rtcp-mux. Lines end with CRLF, including the last one: Chrome rejects an SDP without the final CRLF.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sfu.params import Codec, ConsumerParams, HeaderExtension, MediaKind
from signalling.sdp import OfferedSection, PublishOffer

PROTO = "UDP/TLS/RTP/SAVPF"
# The SFU's codecs towards subscribers (consumers forward the producer's codec). A subscribe connection gives
# each video m-section its own PTs (signalling/payload_types.py); these are the defaults.
SUBSCRIBER_CODECS: dict[str, Codec] = {
    "audio/opus": Codec("audio/opus", 111, 48000, 2, "minptime=10;useinbandfec=1", None, ("transport-cc",)),
    "video/VP8": Codec("video/VP8", 96, 90000, 1, "", 97, ("transport-cc", "nack", "nack pli", "ccm fir")),
    "video/H264": Codec(
        "video/H264", 102, 90000, 1, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        103, ("transport-cc", "nack", "nack pli", "ccm fir"),
    ),
}
SUBSCRIBER_EXTENSIONS: dict[MediaKind, dict[HeaderExtension, int]] = {
    MediaKind.AUDIO: {HeaderExtension.AUDIO_LEVEL: 1, HeaderExtension.TRANSPORT_CC: 3, HeaderExtension.MID: 4},
    MediaKind.VIDEO: {HeaderExtension.TRANSPORT_CC: 3, HeaderExtension.MID: 4},
}
AUDIO_PAYLOAD_TYPES = frozenset(c.payload_type for c in SUBSCRIBER_CODECS.values() if c.mime.startswith("audio/"))
DEFAULT_CODEC = {MediaKind.AUDIO: SUBSCRIBER_CODECS["audio/opus"], MediaKind.VIDEO: SUBSCRIBER_CODECS["video/VP8"]}


@dataclass(frozen=True)
class LocalTransport:
    """Our side of one transport, as the media plane reports it."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: tuple[str, str]  # ("sha-256", "AB:CD:...")
    candidates: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SubscribeSlot:
    """One m-section of a subscribe offer: a consumer, or an inactive slot left by a track that went."""

    mid: str
    kind: MediaKind
    consumer: ConsumerParams | None = None
    stream_id: str | None = None  # the publishing participant's id (msid stream)
    track_id: str | None = None
    codec: Codec | None = None  # an inactive slot keeps listing its last codec: PTs keep their meaning


def _ip_version(ip: str) -> str:
    return "IP6" if ipaddress.ip_address(ip).version == 6 else "IP4"


def _session(session_id: int, version: int, bundle: list[str]) -> list[str]:
    lines = ["v=0", f"o=- {session_id} {version} IN IP4 0.0.0.0", "s=confidant", "t=0 0", "a=ice-lite"]
    if bundle:
        lines.append("a=group:BUNDLE " + " ".join(bundle))
    lines.append("a=msid-semantic: WMS *")
    return lines


def _transport_lines(local: LocalTransport, setup: str) -> list[str]:
    lines = [
        f"a=ice-ufrag:{local.ice_ufrag}",
        f"a=ice-pwd:{local.ice_pwd}",
        f"a=fingerprint:{local.fingerprint[0]} {local.fingerprint[1]}",
        f"a=setup:{setup}",
    ]
    for i, (ip, port) in enumerate(local.candidates):
        # RFC 8445 section 5.1.2.1: type preference 126 (host), local preference descending, component 1.
        priority = (126 << 24) | ((65535 - i) << 8) | 255
        lines.append(f"a=candidate:{i + 1} 1 udp {priority} {ip} {port} typ host")
    lines.append("a=end-of-candidates")
    return lines


def _m_line(kind: str, port: int, fmts: list[str], local: LocalTransport, proto: str = PROTO) -> list[str]:
    ip = local.candidates[0][0] if local.candidates else "0.0.0.0"
    return [f"m={kind} {port} {proto} {' '.join(fmts)}", f"c=IN {_ip_version(ip)} {ip}"]


def _codec_lines(codec: Codec) -> list[str]:
    name = "opus" if codec.mime == "audio/opus" else codec.name
    channels = f"/{codec.channels}" if codec.mime.startswith("audio/") and codec.channels > 1 else ""
    lines = [f"a=rtpmap:{codec.payload_type} {name}/{codec.clock_rate}{channels}"]
    lines += [f"a=rtcp-fb:{codec.payload_type} {fb}" for fb in codec.rtcp_feedback]
    if codec.fmtp:
        lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    if codec.rtx_payload_type is not None:
        lines.append(f"a=rtpmap:{codec.rtx_payload_type} rtx/{codec.clock_rate}")
        lines.append(f"a=fmtp:{codec.rtx_payload_type} apt={codec.payload_type}")
    return lines


def _fmts(codec: Codec) -> list[str]:
    pts = [str(codec.payload_type)]
    if codec.rtx_payload_type is not None:
        pts.append(str(codec.rtx_payload_type))
    return pts


def _finish(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def write_publish_answer(
    offer: PublishOffer, local: LocalTransport, *, session_id: int, version: int = 1
) -> str:
    """Answer a publisher: `recvonly` for each accepted section, port 0 for rejected ones."""
    if not local.candidates:
        raise ValueError("the media plane reported no candidates")
    port = local.candidates[0][1]
    bundle = [s.mid for s in offer.sections if not s.rejected]
    lines = _session(session_id, version, bundle)
    for section in offer.sections:
        lines += _answer_section(section, local, port)
    return _finish(lines)


def _answer_section(section: OfferedSection, local: LocalTransport, port: int) -> list[str]:
    if section.rejected:
        return _m_line(section.kind, 0, list(section.fmts), local, section.proto) + [
            f"a=mid:{section.mid}", "a=inactive"
        ]
    params = section.params
    codec = params.codecs[0] if params is not None else DEFAULT_CODEC[MediaKind(section.kind)]
    lines = _m_line(section.kind, port, _fmts(codec), local)
    lines += _transport_lines(local, "passive")
    lines.append(f"a=mid:{section.mid}")
    if params is not None:
        for ext, ident in sorted(params.header_extensions.items(), key=lambda kv: kv[1]):
            lines.append(f"a=extmap:{ident} {ext.value}")
    lines.append("a=recvonly" if params is not None else "a=inactive")
    lines.append("a=rtcp-mux")
    lines += _codec_lines(codec)
    if section.simulcast_rids:
        lines += [f"a=rid:{rid} recv" for rid in section.simulcast_rids]
        lines.append("a=simulcast:recv " + ";".join(section.simulcast_rids))
    return lines


def write_subscribe_offer(
    slots: list[SubscribeSlot], local: LocalTransport, *, session_id: int, version: int
) -> str:
    """The SFU's offer: one `sendonly` m-section per consumer, inactive slots kept in place."""
    if not slots:
        raise ValueError("a subscribe offer needs at least one m-section")
    if not local.candidates:
        raise ValueError("the media plane reported no candidates")
    port = local.candidates[0][1]
    lines = _session(session_id, version, [s.mid for s in slots])
    for slot in slots:
        consumer = slot.consumer
        codec = consumer.codec if consumer is not None else slot.codec or DEFAULT_CODEC[slot.kind]
        lines += _m_line(slot.kind.value, port, _fmts(codec), local)
        lines += _transport_lines(local, "actpass")
        lines.append(f"a=mid:{slot.mid}")
        extensions = consumer.header_extensions if consumer is not None else SUBSCRIBER_EXTENSIONS[slot.kind]
        for ext, ident in sorted(extensions.items(), key=lambda kv: kv[1]):
            lines.append(f"a=extmap:{ident} {ext.value}")
        if consumer is None:
            lines += ["a=inactive", "a=rtcp-mux"]
            lines += _codec_lines(codec)
            continue
        msid = f"{slot.stream_id} {slot.track_id}"
        lines += ["a=sendonly", f"a=msid:{msid}", "a=rtcp-mux"]
        lines += _codec_lines(codec)
        ssrcs = [consumer.ssrc] + ([consumer.rtx_ssrc] if consumer.rtx_ssrc is not None else [])
        if len(ssrcs) == 2:
            lines.append(f"a=ssrc-group:FID {ssrcs[0]} {ssrcs[1]}")
        for ssrc in ssrcs:
            lines.append(f"a=ssrc:{ssrc} cname:{consumer.cname}")
            lines.append(f"a=ssrc:{ssrc} msid:{msid}")
    return _finish(lines)
