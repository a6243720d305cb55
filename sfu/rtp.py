"""RTP wire layer (RFC 3550 section 5.1): parse once at ingress, build fresh headers at egress.

Hot path code: one `struct` unpack for the fixed header, a byte loop over the header extension block
(RFC 8285) that looks ids up in a precomputed table, and no per-packet dict or object churn beyond the
`RtpPacket` itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from sfu.params import HeaderExtension

__all__ = [
    "EgressWriter",
    "ExtIds",
    "RtpError",
    "RtpPacket",
    "SeqUnwrapper",
    "TsUnwrapper",
    "is_rtcp",
    "parse_rtp",
    "rtx_original_seq",
    "rtx_payload",
]


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


_HEADER = struct.Struct("!BBHII")  # RFC 3550 section 5.1: V/P/X/CC, M/PT, seq, ts, ssrc
_HEADER_SIZE: Final = 12
_U16 = struct.Struct("!H")
_EXT_HEADER = struct.Struct("!HH")  # profile, length in 32-bit words (RFC 3550 section 5.3.1)
_ONE_BYTE_PROFILE: Final = 0xBEDE  # RFC 8285 section 4.2
_TWO_BYTE_PROFILE_MASK: Final = 0xFFF0  # RFC 8285 section 4.3: 0x100 + 4 bits "appbits"
_TWO_BYTE_PROFILE: Final = 0x1000

# Kinds of extension we extract, as small ints so the lookup table is a plain tuple.
_K_NONE: Final = 0
_K_MID: Final = 1
_K_RID: Final = 2
_K_RRID: Final = 3
_K_TCC: Final = 4
_K_AST: Final = 5
_K_AUDIO: Final = 6


@dataclass(frozen=True)
class ExtIds:
    """Negotiated header extension ids for one incoming stream (None = not negotiated)."""

    mid: int | None = None
    rid: int | None = None
    repaired_rid: int | None = None
    transport_cc: int | None = None
    abs_send_time: int | None = None
    audio_level: int | None = None
    # id -> kind, 256 entries so both one-byte (1-14) and two-byte (1-255) ids index it directly.
    kinds: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = [_K_NONE] * 256
        for ext_id, kind in (
            (self.mid, _K_MID),
            (self.rid, _K_RID),
            (self.repaired_rid, _K_RRID),
            (self.transport_cc, _K_TCC),
            (self.abs_send_time, _K_AST),
            (self.audio_level, _K_AUDIO),
        ):
            if ext_id is not None:
                if not 1 <= ext_id <= 255:
                    raise ValueError(f"header extension id out of range: {ext_id}")
                table[ext_id] = kind
        object.__setattr__(self, "kinds", tuple(table))

    @classmethod
    def from_map(cls, ids: dict[HeaderExtension, int]) -> ExtIds:
        return cls(
            mid=ids.get(HeaderExtension.MID),
            rid=ids.get(HeaderExtension.RID),
            repaired_rid=ids.get(HeaderExtension.REPAIRED_RID),
            transport_cc=ids.get(HeaderExtension.TRANSPORT_CC),
            abs_send_time=ids.get(HeaderExtension.ABS_SEND_TIME),
            audio_level=ids.get(HeaderExtension.AUDIO_LEVEL),
        )


NO_EXT_IDS: Final = ExtIds()


class RtpPacket:
    """One parsed, decrypted RTP packet. `data` is never copied; offsets point into it."""

    __slots__ = (
        "abs_send_time",
        "audio_level",
        "csrc_count",
        "data",
        "extension",
        "marker",
        "mid",
        "padding",
        "payload_end",
        "payload_offset",
        "pt",
        "repaired_rid",
        "rid",
        "seq",
        "ssrc",
        "tcc_seq",
        "ts",
        "voice_activity",
    )

    data: bytes
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload_offset: int
    payload_end: int  # excludes RTP padding (RFC 3550 section 5.1, P bit)
    mid: str | None
    rid: str | None
    repaired_rid: str | None
    tcc_seq: int | None
    abs_send_time: int | None  # 6.18 fixed-point seconds, 24 bits
    audio_level: int | None  # -dBov, 0..127 (RFC 6464 section 3)
    voice_activity: bool | None

    @property
    def version(self) -> int:
        return 2  # parse_rtp rejects everything else

    @property
    def payload(self) -> memoryview:
        return memoryview(self.data)[self.payload_offset : self.payload_end]

    @property
    def is_padding_only(self) -> bool:
        return self.payload_end == self.payload_offset

    @property
    def csrcs(self) -> tuple[int, ...]:
        return struct.unpack_from(f"!{self.csrc_count}I", self.data, _HEADER_SIZE)

    def __repr__(self) -> str:
        return (
            f"RtpPacket(ssrc={self.ssrc}, pt={self.pt}, seq={self.seq}, ts={self.ts}, marker={self.marker}, "
            f"payload={self.payload_end - self.payload_offset}B, mid={self.mid!r}, rid={self.rid!r}, "
            f"tcc_seq={self.tcc_seq})"
        )


_unpack_header = _HEADER.unpack_from
_unpack_u16 = _U16.unpack_from
_unpack_ext = _EXT_HEADER.unpack_from
_new_packet = object.__new__


def _decode_sdes(raw: bytes) -> str:
    # RFC 8852 section 3: mid/rid are RFC 2326-style tokens; anything else is a malformed packet.
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RtpError("non-ASCII SDES header extension") from exc


def parse_rtp(data: bytes, ext_ids: ExtIds = NO_EXT_IDS) -> RtpPacket:
    """Parse one decrypted RTP packet; raises RtpError on anything malformed."""
    size = len(data)
    if size < _HEADER_SIZE:
        raise RtpError("shorter than the fixed RTP header")
    b0, b1, seq, ts, ssrc = _unpack_header(data)
    if b0 >> 6 != 2:
        raise RtpError("RTP version is not 2")
    cc = b0 & 0x0F
    offset = _HEADER_SIZE + 4 * cc
    end = size
    if b0 & 0x20:
        pad = data[-1]
        # RFC 3550 section 5.1: the last octet counts itself, so 0 is invalid.
        if pad == 0 or size - pad < offset:
            raise RtpError("bad RTP padding length")
        end = size - pad
    pkt = _new_packet(RtpPacket)
    pkt.mid = pkt.rid = pkt.repaired_rid = None
    pkt.tcc_seq = pkt.abs_send_time = pkt.audio_level = pkt.voice_activity = None
    if b0 & 0x10:
        if offset + 4 > end:
            raise RtpError("truncated header extension")
        profile, words = _unpack_ext(data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > end:
            raise RtpError("header extension overruns the packet")
        if profile == _ONE_BYTE_PROFILE:
            # Inlined one-byte walk (RFC 8285 section 4.2): the common WebRTC case, worth the repetition.
            kinds = ext_ids.kinds
            i = start
            while i < offset:
                b = data[i]
                ext_id = b >> 4
                if ext_id == 0:  # padding byte
                    i += 1
                    continue
                if ext_id == 15:  # reserved: stop processing
                    break
                length = (b & 0x0F) + 1
                i += 1
                if i + length > offset:
                    raise RtpError("one-byte header extension element overruns the block")
                kind = kinds[ext_id]
                if kind == _K_TCC and length >= 2:
                    pkt.tcc_seq = (data[i] << 8) | data[i + 1]
                elif kind:
                    _store(pkt, kind, data, i, length)
                i += length
        elif profile & _TWO_BYTE_PROFILE_MASK == _TWO_BYTE_PROFILE:
            _parse_two_byte(pkt, data, start, offset, ext_ids.kinds)
    elif offset > end:
        raise RtpError("CSRC list overruns the packet")
    pkt.data = data
    pkt.padding = bool(b0 & 0x20)
    pkt.extension = bool(b0 & 0x10)
    pkt.csrc_count = cc
    pkt.marker = b1 >= 0x80
    pkt.pt = b1 & 0x7F
    pkt.seq = seq
    pkt.ts = ts
    pkt.ssrc = ssrc
    pkt.payload_offset = offset
    pkt.payload_end = end
    return pkt


def _parse_two_byte(pkt: RtpPacket, data: bytes, i: int, end: int, kinds: tuple[int, ...]) -> None:
    while i < end:
        ext_id = data[i]
        if ext_id == 0:  # RFC 8285 section 4.3: padding byte
            i += 1
            continue
        if i + 2 > end:
            raise RtpError("truncated two-byte header extension element")
        length = data[i + 1]
        i += 2
        if i + length > end:
            raise RtpError("two-byte header extension element overruns the block")
        kind = kinds[ext_id]
        if kind and length:
            _store(pkt, kind, data, i, length)
        i += length


def _store(pkt: RtpPacket, kind: int, data: bytes, i: int, length: int) -> None:
    if kind == _K_TCC:
        if length < 2:
            raise RtpError("transport-cc extension shorter than 2 bytes")
        pkt.tcc_seq = (data[i] << 8) | data[i + 1]
    elif kind == _K_AUDIO:
        b = data[i]
        pkt.audio_level = b & 0x7F
        pkt.voice_activity = b >= 0x80
    elif kind == _K_MID:
        pkt.mid = _decode_sdes(data[i : i + length])
    elif kind == _K_RID:
        pkt.rid = _decode_sdes(data[i : i + length])
    elif kind == _K_RRID:
        pkt.repaired_rid = _decode_sdes(data[i : i + length])
    elif kind == _K_AST:
        if length < 3:
            raise RtpError("abs-send-time extension shorter than 3 bytes")
        pkt.abs_send_time = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2]


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4: RTCP packet types 192-223 occupy the second byte; RTP PTs 64-95 must not be used."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def rtx_original_seq(pkt: RtpPacket) -> int:
    """The original sequence number (OSN) carried first in an RTX payload (RFC 4588 section 4)."""
    if pkt.payload_end - pkt.payload_offset < 2:
        raise RtpError("RTX payload shorter than its OSN")
    return int(_unpack_u16(pkt.data, pkt.payload_offset)[0])


def rtx_payload(pkt: RtpPacket) -> memoryview:
    """The original payload inside an RTX packet, after the 2-byte OSN."""
    if pkt.payload_end - pkt.payload_offset < 2:
        raise RtpError("RTX payload shorter than its OSN")
    return memoryview(pkt.data)[pkt.payload_offset + 2 : pkt.payload_end]


class EgressWriter:
    """Builds fresh RTP headers for one outgoing stream: our SSRC, PT and only our own extensions.

    Publisher extensions are never copied: a subscriber gets transport-cc (our own transport-wide
    sequence) and, for audio, the audio level. Each header shape is one precompiled `struct.Struct`.
    """

    __slots__ = ("_al_b", "_audio", "_both", "_plain", "_tcc", "_tcc_b", "audio_level_id", "pt", "ssrc", "tcc_id")

    def __init__(self, ssrc: int, pt: int, *, transport_cc_id: int | None = None,
                 audio_level_id: int | None = None) -> None:
        for ext_id in (transport_cc_id, audio_level_id):
            if ext_id is not None and not 1 <= ext_id <= 14:
                raise ValueError(f"one-byte header extension id must be 1-14: {ext_id}")
        if not 0 <= pt <= 127:
            raise ValueError(f"payload type out of range: {pt}")
        self.ssrc = ssrc
        self.pt = pt
        self.tcc_id = transport_cc_id
        self.audio_level_id = audio_level_id
        # One-byte element header: id << 4 | (length - 1) (RFC 8285 section 4.2).
        self._tcc_b = ((transport_cc_id or 0) << 4) | 1
        self._al_b = ((audio_level_id or 0) << 4) | 0
        self._plain = struct.Struct("!BBHII")
        # 12-byte header, 0xBEDE + length, elements, zero padding to a 32-bit boundary.
        self._tcc = struct.Struct("!BBHIIHHBHx")  # 3 bytes of element + 1 pad = 1 word
        self._audio = struct.Struct("!BBHIIHHBBxx")  # 2 bytes + 2 pad = 1 word
        self._both = struct.Struct("!BBHIIHHBHBBxxx")  # 5 bytes + 3 pad = 2 words

    def header(self, marker: bool, seq: int, ts: int, tcc_seq: int | None, level: int | None,
               padding: bool = False) -> bytes:
        """The header alone, positional (the forwarding path appends the payload itself). `level` is the
        audio-level byte as sent: V bit | -dBov."""
        b1 = self.pt | 0x80 if marker else self.pt
        b0 = 0xA0 if padding else 0x80
        if tcc_seq is not None and self.tcc_id is not None:
            if level is not None and self.audio_level_id is not None:
                return self._both.pack(b0 | 0x10, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc, _ONE_BYTE_PROFILE,
                                       2, self._tcc_b, tcc_seq & 0xFFFF, self._al_b, level)
            return self._tcc.pack(b0 | 0x10, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc, _ONE_BYTE_PROFILE, 1,
                                  self._tcc_b, tcc_seq & 0xFFFF)
        if level is not None and self.audio_level_id is not None:
            return self._audio.pack(b0 | 0x10, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc, _ONE_BYTE_PROFILE, 1,
                                    self._al_b, level)
        return self._plain.pack(b0, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc)

    def build(self, *, marker: bool, seq: int, ts: int, tcc_seq: int | None = None, audio_level: int | None = None,
              voice_activity: bool = False, payload: bytes | memoryview) -> bytes:
        """Header + payload. `seq`/`ts` may be extended values; they are truncated to wire widths here."""
        level = None if audio_level is None else (audio_level & 0x7F) | (0x80 if voice_activity else 0)
        return self.header(marker, seq, ts, tcc_seq, level, False) + payload

    def build_rtx(self, *, marker: bool, seq: int, ts: int, osn: int, tcc_seq: int | None = None,
                  payload: bytes | memoryview) -> bytes:
        """An RTX packet (RFC 4588 section 4): this writer's SSRC/PT (the RTX ones), OSN, original payload."""
        return self.header(marker, seq, ts, tcc_seq, None, False) + _U16.pack(osn & 0xFFFF) + payload

    def build_padding(self, *, seq: int, ts: int, tcc_seq: int | None = None, size: int = 255) -> bytes:
        """A padding-only packet (for bandwidth probes): no payload, `size` bytes of RTP padding (1-255)."""
        if not 1 <= size <= 255:
            raise ValueError(f"RTP padding length must be 1-255: {size}")
        return self.header(False, seq, ts, tcc_seq, None, True) + bytes(size - 1) + bytes((size,))


class _Unwrapper:
    """Wire counters of `bits` bits -> monotonic extended ints, tolerant to reordering (RFC 3550 appendix A.1).

    The first value is returned as is; a late packet from before it may unwrap below it (even negative).
    """

    __slots__ = ("_half", "_last", "_mask")

    def __init__(self, bits: int) -> None:
        self._mask = (1 << bits) - 1
        self._half = 1 << (bits - 1)
        self._last: int | None = None

    @property
    def highest(self) -> int | None:
        return self._last

    def unwrap(self, value: int) -> int:
        last = self._last
        if last is None:
            self._last = value
            return value
        delta = (value - last) & self._mask
        if delta >= self._half:
            return last + delta - self._mask - 1
        ext = last + delta
        self._last = ext
        return ext


class SeqUnwrapper(_Unwrapper):
    """16-bit RTP sequence numbers."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(16)


class TsUnwrapper(_Unwrapper):
    """32-bit RTP timestamps."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(32)
