"""SDP parsing: a publisher's offer into `sfu.params.ProducerParams`, a subscriber's answer into its ICE/DTLS.

Our own small parser (the server must not import aiortc), strict where the media plane depends on a
value (ICE credentials, fingerprint, rtcp-mux, codecs) and lenient about attributes we do not use.
RFC 8866 (SDP), RFC 8829 (JSEP), RFC 8851 (rid), RFC 8853 (simulcast), RFC 4588 (RTX).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from sfu.params import Codec, Encoding, HeaderExtension, MediaKind, ProducerParams

MAX_SDP_BYTES = 60_000
SUPPORTED_FEEDBACK = ("transport-cc", "nack", "nack pli", "ccm fir")
PREFERRED_H264_PROFILES = ("42e01f", "42001f", "4d001f", "640c1f")  # constrained baseline first
_AUDIO_EXTENSIONS = {HeaderExtension.MID, HeaderExtension.AUDIO_LEVEL, HeaderExtension.TRANSPORT_CC,
                     HeaderExtension.ABS_SEND_TIME}
_VIDEO_EXTENSIONS = {HeaderExtension.MID, HeaderExtension.RID, HeaderExtension.REPAIRED_RID,
                     HeaderExtension.TRANSPORT_CC, HeaderExtension.ABS_SEND_TIME}
_URIS = {e.value: e for e in HeaderExtension}
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:+/=-]{1,256}$")
_RID_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")  # RFC 8851 section 10 grammar; Chrome caps at 16
_MID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(ValueError):
    """The SDP cannot be used. Maps to the protocol error `invalid_sdp`."""


# -- generic parsing -----------------------------------------------------------------------------


@dataclass
class MediaSection:
    kind: str
    port: int
    proto: str
    fmts: list[str]
    attrs: list[tuple[str, str]] = field(default_factory=list)  # (name, value); flags have value ""

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.attrs if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.attrs if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.attrs)

    @property
    def mid(self) -> str | None:
        return self.get("mid")

    @property
    def direction(self) -> str:
        return next((k for k, _ in self.attrs if k in _DIRECTIONS), "sendrecv")


@dataclass
class SessionDescription:
    attrs: list[tuple[str, str]]
    media: list[MediaSection]

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.attrs if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.attrs if k == name]

    def bundle(self) -> list[str]:
        for group in self.all("group"):
            parts = group.split()
            if parts and parts[0] == "BUNDLE":
                return parts[1:]
        return []


def parse_sdp(text: object) -> SessionDescription:
    if not isinstance(text, str) or not text:
        raise SdpError("sdp must be a non-empty string")
    if len(text) > MAX_SDP_BYTES:
        raise SdpError("sdp too large")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0":
        raise SdpError("sdp must start with v=0")
    session: list[tuple[str, str]] = []
    media: list[MediaSection] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError("malformed sdp line")
        key, value = line[0], line[2:]
        if key == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].isdigit():
                raise SdpError("malformed m= line")
            media.append(MediaSection(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:]))
        elif key == "a":
            name, _, attr_value = value.partition(":")
            (media[-1].attrs if media else session).append((name, attr_value.strip()))
    if not media:
        raise SdpError("sdp has no media sections")
    return SessionDescription(session, media)


# -- transport parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteTransport:
    """What the media plane's `WebRtcTransport.set_remote` needs from the peer."""

    ice_ufrag: str
    ice_pwd: str
    fingerprints: tuple[tuple[str, str], ...]
    setup: str


def _transport_of(desc: SessionDescription, section: MediaSection) -> RemoteTransport:
    def pick(name: str) -> str | None:
        return section.get(name) or desc.get(name)

    ufrag, pwd = pick("ice-ufrag"), pick("ice-pwd")
    if not ufrag or not pwd or not _TOKEN_RE.match(ufrag) or not _TOKEN_RE.match(pwd):
        raise SdpError("missing or malformed ice-ufrag/ice-pwd")
    fingerprints = []
    for raw in section.all("fingerprint") or desc.all("fingerprint"):
        algorithm, _, value = raw.partition(" ")
        if algorithm.lower() == "sha-256" and re.fullmatch(r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}", value.strip()):
            fingerprints.append(("sha-256", value.strip().upper()))
    if not fingerprints:
        raise SdpError("missing sha-256 fingerprint")
    setup = pick("setup") or ""
    if setup not in ("actpass", "active", "passive", "holdconn"):
        raise SdpError("missing or malformed a=setup")
    return RemoteTransport(ufrag, pwd, tuple(fingerprints), setup)


# -- publisher offer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferedSection:
    """One m-section of a publisher's offer and what we make of it.

    `params` is set when we accept media from it (active and supported); `rejected` when we answer
    port 0 (not audio/video, or port 0 in the offer). Otherwise the section is inactive.
    """

    index: int
    kind: str
    mid: str
    fmts: tuple[str, ...]
    proto: str
    params: ProducerParams | None = None
    rejected: bool = False
    simulcast_rids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishOffer:
    transport: RemoteTransport
    sections: tuple[OfferedSection, ...]
    bundle: tuple[str, ...]

    @property
    def producers(self) -> list[ProducerParams]:
        return [s.params for s in self.sections if s.params is not None]


@dataclass(frozen=True)
class _Rtpmap:
    pt: int
    name: str
    clock_rate: int
    channels: int


def _rtpmaps(section: MediaSection) -> dict[int, _Rtpmap]:
    maps: dict[int, _Rtpmap] = {}
    for raw in section.all("rtpmap"):
        m = re.fullmatch(r"(\d{1,3}) ([A-Za-z0-9_.-]+)/(\d+)(?:/(\d+))?", raw)
        if not m:
            raise SdpError("malformed a=rtpmap")
        pt = int(m.group(1))
        if pt > 127:
            raise SdpError("payload type out of range")
        maps[pt] = _Rtpmap(pt, m.group(2), int(m.group(3)), int(m.group(4) or 1))
    return maps


def _fmtps(section: MediaSection) -> dict[int, str]:
    out: dict[int, str] = {}
    for raw in section.all("fmtp"):
        pt, _, params = raw.partition(" ")
        if pt.isdigit():
            out[int(pt)] = params.strip()
    return out


def _fmtp_dict(fmtp: str) -> dict[str, str]:
    pairs = (p.strip().partition("=") for p in fmtp.split(";") if p.strip())
    return {k.strip().lower(): v.strip() for k, _, v in pairs}


def _feedback(section: MediaSection, pt: int) -> tuple[str, ...]:
    offered = set()
    for raw in section.all("rtcp-fb"):
        target, _, value = raw.partition(" ")
        if target in (str(pt), "*"):
            offered.add(" ".join(value.split()))
    return tuple(fb for fb in SUPPORTED_FEEDBACK if fb in offered)


def _choose_codec(section: MediaSection, kind: MediaKind, video_codec: str) -> Codec:
    maps, fmtps = _rtpmaps(section), _fmtps(section)
    offered = [maps[int(f)] for f in section.fmts if f.isdigit() and int(f) in maps]
    chosen: _Rtpmap | None = None
    if kind is MediaKind.AUDIO:
        chosen = next((c for c in offered if c.name.lower() == "opus" and c.clock_rate == 48000), None)
    else:
        vp8 = next((c for c in offered if c.name.upper() == "VP8" and c.clock_rate == 90000), None)
        h264 = _choose_h264(offered, fmtps)
        chosen = (h264 or vp8) if video_codec.upper() == "H264" else (vp8 or h264)
    if chosen is None:
        raise SdpError(f"m-section {section.mid} offers no supported {kind.value} codec")
    rtx = next(
        (c.pt for c in offered if c.name.lower() == "rtx"
         and _fmtp_dict(fmtps.get(c.pt, "")).get("apt") == str(chosen.pt)),
        None,
    )
    name = "opus" if kind is MediaKind.AUDIO else chosen.name.upper()
    return Codec(
        mime=f"{kind.value}/{name}",
        payload_type=chosen.pt,
        clock_rate=chosen.clock_rate,
        channels=chosen.channels if kind is MediaKind.AUDIO else 1,
        fmtp=fmtps.get(chosen.pt, ""),
        rtx_payload_type=rtx if kind is MediaKind.VIDEO else None,
        rtcp_feedback=_feedback(section, chosen.pt),
    )


def _choose_h264(offered: list[_Rtpmap], fmtps: dict[int, str]) -> _Rtpmap | None:
    candidates = []
    for c in offered:
        if c.name.upper() != "H264" or c.clock_rate != 90000:
            continue
        params = _fmtp_dict(fmtps.get(c.pt, ""))
        if params.get("packetization-mode") != "1":
            continue
        profile = params.get("profile-level-id", "").lower()
        rank = PREFERRED_H264_PROFILES.index(profile) if profile in PREFERRED_H264_PROFILES else 99
        candidates.append((rank, offered.index(c), c))
    return min(candidates, key=lambda x: (x[0], x[1]))[2] if candidates else None


def _extensions(section: MediaSection, kind: MediaKind) -> dict[HeaderExtension, int]:
    allowed = _AUDIO_EXTENSIONS if kind is MediaKind.AUDIO else _VIDEO_EXTENSIONS
    out: dict[HeaderExtension, int] = {}
    for raw in section.all("extmap"):
        parts = raw.split()
        if len(parts) < 2:
            raise SdpError("malformed a=extmap")
        ident = parts[0].split("/")[0]
        if not ident.isdigit() or not 1 <= int(ident) <= 255:
            raise SdpError("extmap id out of range")
        ext = _URIS.get(parts[1])
        if ext is not None and ext in allowed:
            out[ext] = int(ident)
    return out


def _simulcast_rids(section: MediaSection) -> list[tuple[str, int | None]]:
    """RFC 8853: `a=simulcast:send q;h;f` ordered as listed; each rid declared by `a=rid:<id> send`."""
    raw = section.get("simulcast")
    if raw is None:
        return []
    tokens = raw.split()
    if "send" not in tokens or tokens.index("send") + 1 >= len(tokens):
        raise SdpError("a=simulcast without a send list")
    send_list = tokens[tokens.index("send") + 1]
    declared: dict[str, int | None] = {}
    for rid_line in section.all("rid"):
        parts = rid_line.split()
        if len(parts) < 2 or not _RID_RE.match(parts[0]):
            raise SdpError("malformed a=rid")
        if parts[1] != "send":
            continue
        max_br = None
        for restriction in (parts[2].split(";") if len(parts) > 2 else []):
            key, _, value = restriction.partition("=")
            if key == "max-br" and value.isdigit():
                max_br = int(value)
        declared[parts[0]] = max_br
    rids: list[tuple[str, int | None]] = []
    for stream in send_list.split(";"):
        # Alternatives ("a,b") are offered in preference order; take the first (RFC 8853 section 5.1).
        rid = stream.split(",")[0].lstrip("~")
        if rid not in declared:
            raise SdpError(f"simulcast rid {rid!r} has no a=rid send line")
        rids.append((rid, declared[rid]))
    if not 1 <= len(rids) <= 3 or len({r for r, _ in rids}) != len(rids):
        raise SdpError("simulcast needs 1-3 distinct rids")
    return rids


def _ssrc_encoding(section: MediaSection) -> tuple[tuple[Encoding, ...], str | None]:
    cname = None
    ssrcs: list[int] = []
    for raw in section.all("ssrc"):
        ident, _, rest = raw.partition(" ")
        if not ident.isdigit() or int(ident) >= 2**32:
            raise SdpError("malformed a=ssrc")
        if int(ident) not in ssrcs:
            ssrcs.append(int(ident))
        if rest.startswith("cname:"):
            cname = cname or rest[6:].strip()
    for group in section.all("ssrc-group"):
        parts = group.split()
        if parts[0] == "FID" and len(parts) == 3 and all(p.isdigit() for p in parts[1:]):
            return (Encoding(ssrc=int(parts[1]), rtx_ssrc=int(parts[2])),), cname
    if ssrcs:
        return (Encoding(ssrc=ssrcs[0]),), cname
    return (), cname


def parse_publish_offer(text: object, *, video_codec: str = "VP8") -> PublishOffer:
    """Parse a publisher's offer. Raises SdpError for anything we cannot answer."""
    desc = parse_sdp(text)
    transport: RemoteTransport | None = None
    sections: list[OfferedSection] = []
    mids: set[str] = set()
    for index, section in enumerate(desc.media):
        mid = section.mid
        if mid is None or not _MID_RE.match(mid) or mid in mids:
            raise SdpError("every m-section needs a unique a=mid")
        mids.add(mid)
        base = OfferedSection(index=index, kind=section.kind, mid=mid, fmts=tuple(section.fmts),
                              proto=section.proto)
        if section.kind not in ("audio", "video") or section.port == 0:
            sections.append(replace(base, rejected=True))
            continue
        kind = MediaKind(section.kind)
        if not section.has("rtcp-mux"):
            raise SdpError("rtcp-mux is required")
        section_transport = _transport_of(desc, section)
        if section_transport.setup == "passive":
            raise SdpError("a=setup:passive in an offer is not supported (we are the DTLS server)")
        transport = transport or section_transport
        codec = _choose_codec(section, kind, video_codec)
        if section.direction not in ("sendonly", "sendrecv"):
            sections.append(base)
            continue
        rids = _simulcast_rids(section) if kind is MediaKind.VIDEO else []
        ssrc_encodings, cname = _ssrc_encoding(section)
        encodings = tuple(Encoding(rid=r, max_bitrate=br) for r, br in rids) if rids else ssrc_encodings
        params = ProducerParams(
            kind=kind,
            mid=mid,
            codecs=(codec,),
            header_extensions=_extensions(section, kind),
            encodings=encodings,
            cname=cname,
        )
        if rids and HeaderExtension.RID not in params.header_extensions:
            raise SdpError("simulcast needs the rid header extension")
        sections.append(replace(base, params=params, simulcast_rids=tuple(r for r, _ in rids)))
    if transport is None:
        raise SdpError("no usable audio or video m-section")
    bundle = desc.bundle()
    live = [s.mid for s in sections if not s.rejected]
    if len(live) > 1 and not set(live) <= set(bundle):
        raise SdpError("all media must be in one a=group:BUNDLE")
    return PublishOffer(transport=transport, sections=tuple(sections), bundle=tuple(bundle))


# -- subscriber answer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeAnswer:
    transport: RemoteTransport
    rejected_mids: tuple[str, ...]


def parse_subscribe_answer(text: object, offered_mids: list[str]) -> SubscribeAnswer:
    """Parse the answer to our subscribe offer; it must keep our m-sections and say `setup:active`."""
    desc = parse_sdp(text)
    mids = [m.mid for m in desc.media]
    if mids != offered_mids:
        raise SdpError("answer m-sections do not match the offer")
    live = [m for m in desc.media if m.port != 0]
    if not live:
        raise SdpError("answer rejects every m-section")
    transport = _transport_of(desc, live[0])
    if transport.setup != "active":
        raise SdpError("the subscribe answer must say a=setup:active (we are the DTLS server)")
    return SubscribeAnswer(transport, tuple(m.mid or "" for m in desc.media if m.port == 0))
