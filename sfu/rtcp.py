"""RTCP codec: RFC 3550 section 6 reports, RFC 4585/5104 feedback, transport-cc and REMB.

Each packet of a compound is parsed on its own by walking the length fields, so one malformed or
unknown packet never hides the others. Unknown types decode to `RawRtcp` and serialise back unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final, TypeVar

__all__ = [
    "Bye",
    "Fir",
    "Nack",
    "Pli",
    "RawRtcp",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "Sdes",
    "SdesChunk",
    "SenderReport",
    "TransportCc",
    "parse_compound",
    "parse_packet",
    "serialize",
]


class RtcpError(ValueError):
    """A malformed RTCP packet (or one that cannot be serialised)."""


# RFC 3550 section 12.1 / RFC 4585 section 6.1 packet types.
PT_SR: Final = 200
PT_RR: Final = 201
PT_SDES: Final = 202
PT_BYE: Final = 203
PT_RTPFB: Final = 205
PT_PSFB: Final = 206
# Feedback message types (FMT).
FMT_NACK: Final = 1  # RFC 4585 section 6.2.1
FMT_TCC: Final = 15  # draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1
FMT_PLI: Final = 1  # RFC 4585 section 6.3.1
FMT_FIR: Final = 4  # RFC 5104 section 4.3.1
FMT_AFB: Final = 15  # RFC 4585 section 6.4; REMB is carried as application layer feedback
_REMB_ID: Final = b"REMB"  # draft-alvestrand-rmcat-remb-03 section 2.2

_HDR = struct.Struct("!BBH")
_I = struct.Struct("!I")
_II = struct.Struct("!II")
_HH = struct.Struct("!HH")
_SR_INFO = struct.Struct("!IQIII")  # ssrc, NTP, RTP ts, packets, octets (RFC 3550 section 6.4.1)
_BLOCK = struct.Struct("!IIIIII")  # RFC 3550 section 6.4.1 report block (24 bytes)
_TCC_HDR = struct.Struct("!IIHHI")  # sender, media, base seq, status count, ref time(24) + fb count(8)
_MAX_COUNT: Final = 31  # 5-bit RC/SC field


def _packet(pt: int, count: int, body: bytes) -> bytes:
    if count > _MAX_COUNT:
        raise RtcpError(f"count {count} does not fit in 5 bits; split the packet")
    pad = -len(body) % 4
    if pad:
        # RFC 3550 section 6.4.1: P bit set, last octet counts the padding.
        body = body + bytes(pad - 1) + bytes((pad,))
        return _HDR.pack(0xA0 | count, pt, len(body) // 4) + body
    return _HDR.pack(0x80 | count, pt, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RFC 3550 section 6.4.1 reception report block."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point, lost/expected * 256
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number received (32-bit)
    jitter: int
    lsr: int  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int  # delay since last SR, 1/65536 s

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(self.ssrc, (self.fraction_lost & 0xFF) << 24 | lost, self.highest_seq, self.jitter,
                           self.lsr, self.dlsr)

    @classmethod
    def parse(cls, data: bytes | memoryview, offset: int = 0) -> ReportBlock:
        if len(data) - offset < _BLOCK.size:
            raise RtcpError("truncated report block")
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if len(body) < offset + count * _BLOCK.size:
        raise RtcpError("report count overruns the packet")
    return tuple(ReportBlock.parse(body, offset + i * _BLOCK.size) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RFC 3550 section 6.4.1. Profile-specific extensions after the blocks are ignored."""

    PT: ClassVar[int] = PT_SR
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = _SR_INFO.pack(self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count,
                             self.octet_count)
        return _packet(PT_SR, len(self.reports), body + b"".join(bytes(r) for r in self.reports))

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < _SR_INFO.size:
            raise RtcpError("truncated sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        return cls(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(body, _SR_INFO.size, count))

    @classmethod
    def parse(cls, data: bytes) -> SenderReport:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RFC 3550 section 6.4.2."""

    PT: ClassVar[int] = PT_RR
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        return _packet(PT_RR, len(self.reports), _I.pack(self.ssrc) + b"".join(bytes(r) for r in self.reports))

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpError("truncated receiver report")
        return cls(_I.unpack_from(body)[0], _parse_blocks(body, 4, count))

    @classmethod
    def parse(cls, data: bytes) -> ReceiverReport:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: items as (type, text); type 1 is CNAME (RFC 3550 section 6.5.1)."""

    ssrc: int
    items: tuple[tuple[int, str], ...]


def _text(raw: bytes) -> str:
    # surrogateescape: never fails on hostile bytes, and re-encodes to exactly the same bytes.
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Sdes:
    """RFC 3550 section 6.5."""

    PT: ClassVar[int] = PT_SDES
    chunks: tuple[SdesChunk, ...]

    def __bytes__(self) -> bytes:
        out = bytearray()
        for chunk in self.chunks:
            out += _I.pack(chunk.ssrc)
            for item_type, text in chunk.items:
                value = _raw(text)
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise RtcpError("SDES item type or length out of range")
                out += bytes((item_type, len(value))) + value
            # End of item list: at least one null octet, then pad to a 32-bit boundary (section 6.5).
            out += bytes(4 - len(out) % 4)
        return _packet(PT_SDES, len(self.chunks), bytes(out))

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Sdes:
        chunks = []
        i = 0
        for _ in range(count):
            if i + 4 > len(body):
                raise RtcpError("truncated SDES chunk")
            ssrc = _I.unpack_from(body, i)[0]
            i += 4
            items = []
            while True:
                if i >= len(body):
                    raise RtcpError("SDES chunk without terminator")
                item_type = body[i]
                if item_type == 0:
                    i = (i + 4) & ~3  # skip the null octet and padding
                    break
                if i + 2 > len(body) or i + 2 + body[i + 1] > len(body):
                    raise RtcpError("SDES item overruns the packet")
                length = body[i + 1]
                items.append((item_type, _text(body[i + 2 : i + 2 + length])))
                i += 2 + length
            chunks.append(SdesChunk(ssrc, tuple(items)))
        return cls(tuple(chunks))

    @classmethod
    def parse(cls, data: bytes) -> Sdes:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class Bye:
    """RFC 3550 section 6.6."""

    PT: ClassVar[int] = PT_BYE
    ssrcs: tuple[int, ...]
    reason: str | None = None

    def __bytes__(self) -> bytes:
        body = b"".join(_I.pack(s) for s in self.ssrcs)
        if self.reason is not None:
            raw = _raw(self.reason)
            if len(raw) > 255:
                raise RtcpError("BYE reason longer than 255 bytes")
            body += bytes((len(raw),)) + raw
            body += bytes(-len(body) % 4)
        return _packet(PT_BYE, len(self.ssrcs), body)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Bye:
        end = 4 * count
        if end > len(body):
            raise RtcpError("BYE source count overruns the packet")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        reason = None
        if end < len(body):
            length = body[end]
            if end + 1 + length > len(body):
                raise RtcpError("BYE reason overruns the packet")
            reason = _text(body[end + 1 : end + 1 + length])
        return cls(ssrcs, reason)

    @classmethod
    def parse(cls, data: bytes) -> Bye:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class Nack:
    """Generic NACK (RFC 4585 section 6.2.1): lost 16-bit sequence numbers, packed into PID/BLP pairs."""

    PT: ClassVar[int] = PT_RTPFB
    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]

    def __bytes__(self) -> bytes:
        fci = bytearray()
        pid = -1
        blp = 0
        seen = set()
        for seq in self.lost:
            seq &= 0xFFFF
            if seq in seen:
                continue
            seen.add(seq)
            if pid >= 0:
                diff = (seq - pid) & 0xFFFF  # wraps at 65535
                if 1 <= diff <= 16:
                    blp |= 1 << (diff - 1)
                    continue
                fci += _HH.pack(pid, blp)
            pid, blp = seq, 0
        if pid >= 0:
            fci += _HH.pack(pid, blp)
        return _packet(PT_RTPFB, FMT_NACK, _II.pack(self.sender_ssrc, self.media_ssrc) + bytes(fci))

    @classmethod
    def _from_fci(cls, sender: int, media: int, fci: bytes) -> Nack:
        if len(fci) % 4:
            raise RtcpError("NACK FCI is not a whole number of entries")
        lost = []
        for pid, blp in _HH.iter_unpack(fci):
            lost.append(pid)
            for bit in range(16):
                if blp >> bit & 1:
                    lost.append((pid + bit + 1) & 0xFFFF)
        return cls(sender, media, tuple(lost))

    @classmethod
    def parse(cls, data: bytes) -> Nack:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class Pli:
    """Picture Loss Indication (RFC 4585 section 6.3.1)."""

    PT: ClassVar[int] = PT_PSFB
    sender_ssrc: int
    media_ssrc: int

    def __bytes__(self) -> bytes:
        return _packet(PT_PSFB, FMT_PLI, _II.pack(self.sender_ssrc, self.media_ssrc))

    @classmethod
    def parse(cls, data: bytes) -> Pli:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class Fir:
    """Full Intra Request (RFC 5104 section 4.3.1): the media SSRC field is 0, targets are in the FCI."""

    PT: ClassVar[int] = PT_PSFB
    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]  # (media ssrc, command sequence number 0-255)

    def __bytes__(self) -> bytes:
        fci = b"".join(_II.pack(ssrc, (seqnr & 0xFF) << 24) for ssrc, seqnr in self.entries)
        return _packet(PT_PSFB, FMT_FIR, _II.pack(self.sender_ssrc, 0) + fci)

    @classmethod
    def _from_fci(cls, sender: int, fci: bytes) -> Fir:
        if len(fci) % 8:
            raise RtcpError("FIR FCI is not a whole number of entries")
        return cls(sender, tuple((ssrc, word >> 24) for ssrc, word in _II.iter_unpack(fci)))

    @classmethod
    def parse(cls, data: bytes) -> Fir:
        return _parse_as(cls, data)


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver Estimated Max Bitrate (draft-alvestrand-rmcat-remb-03 section 2.2)."""

    PT: ClassVar[int] = PT_PSFB
    sender_ssrc: int
    bitrate_bps: int
    ssrcs: tuple[int, ...]

    def __bytes__(self) -> bytes:
        mantissa = max(0, self.bitrate_bps)
        exp = 0
        while mantissa > 0x3FFFF:  # 18-bit mantissa, 6-bit exponent
            mantissa >>= 1
            exp += 1
        if exp > 63 or len(self.ssrcs) > 255:
            raise RtcpError("REMB bitrate or SSRC count out of range")
        fci = _REMB_ID + _I.pack(len(self.ssrcs) << 24 | exp << 18 | mantissa)
        fci += b"".join(_I.pack(s) for s in self.ssrcs)
        return _packet(PT_PSFB, FMT_AFB, _II.pack(self.sender_ssrc, 0) + fci)

    @classmethod
    def _from_fci(cls, sender: int, fci: bytes) -> Remb:
        if len(fci) < 8:
            raise RtcpError("truncated REMB")
        word = _I.unpack_from(fci, 4)[0]
        count = word >> 24
        if len(fci) < 8 + 4 * count:
            raise RtcpError("REMB SSRC count overruns the packet")
        bitrate = (word & 0x3FFFF) << (word >> 18 & 0x3F)
        return cls(sender, bitrate, struct.unpack_from(f"!{count}I", fci, 8))

    @classmethod
    def parse(cls, data: bytes) -> Remb:
        return _parse_as(cls, data)


# Transport-wide feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1).
TCC_TICK_US: Final = 250  # receive delta resolution
TCC_REFERENCE_US: Final = 64_000  # reference time unit
_NOT_RECEIVED: Final = 0
_SMALL: Final = 1  # delta fits in one unsigned byte
_LARGE: Final = 2  # two-byte signed delta
_MAX_RUN: Final = 0x1FFF  # 13-bit run length


@dataclass(frozen=True, slots=True)
class TransportCc:
    """Transport-wide congestion control feedback.

    `packets` lists consecutive sequence numbers from `base_seq` as (seq16, delta_us | None): the receive
    delta in microseconds (a multiple of 250) from the previous received packet, or, for the first
    received one, from `reference_time * 64 ms`; None when not received.
    """

    PT: ClassVar[int] = PT_RTPFB
    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # 24 bits, units of 64 ms
    fb_count: int  # 8 bits
    packets: tuple[tuple[int, int | None], ...]

    def arrivals_us(self) -> list[tuple[int, int | None]]:
        """(seq16, absolute arrival time in us on the receiver's clock, modulo the 24-bit reference)."""
        t = self.reference_time * TCC_REFERENCE_US
        out: list[tuple[int, int | None]] = []
        for seq, delta in self.packets:
            if delta is None:
                out.append((seq, None))
            else:
                t += delta
                out.append((seq, t))
        return out

    def __bytes__(self) -> bytes:
        statuses = []
        deltas = bytearray()
        for i, (seq, delta) in enumerate(self.packets):
            if seq != (self.base_seq + i) & 0xFFFF:
                raise RtcpError("transport-cc packets must be consecutive from base_seq")
            if delta is None:
                statuses.append(_NOT_RECEIVED)
                continue
            ticks, rem = divmod(delta, TCC_TICK_US)
            if rem:
                raise RtcpError("transport-cc delta is not a multiple of 250 us")
            if 0 <= ticks <= 0xFF:
                statuses.append(_SMALL)
                deltas.append(ticks)
            elif -0x8000 <= ticks <= 0x7FFF:
                statuses.append(_LARGE)
                deltas += struct.pack("!h", ticks)
            else:
                raise RtcpError("transport-cc delta out of range; start a new feedback packet")
        head = _TCC_HDR.pack(self.sender_ssrc, self.media_ssrc, self.base_seq & 0xFFFF, len(statuses),
                             (self.reference_time & 0xFFFFFF) << 8 | (self.fb_count & 0xFF))
        return _packet(PT_RTPFB, FMT_TCC, head + _encode_chunks(statuses) + bytes(deltas))

    @classmethod
    def _from_body(cls, body: bytes) -> TransportCc:
        if len(body) < _TCC_HDR.size:
            raise RtcpError("truncated transport-cc header")
        sender, media, base, count, ref = _TCC_HDR.unpack_from(body)
        i = _TCC_HDR.size
        statuses: list[int] = []
        while len(statuses) < count:
            if i + 2 > len(body):
                raise RtcpError("transport-cc status chunks overrun the packet")
            chunk = body[i] << 8 | body[i + 1]
            i += 2
            left = count - len(statuses)
            if not chunk & 0x8000:  # run length chunk
                run = chunk & _MAX_RUN
                if run == 0:
                    raise RtcpError("transport-cc run length of zero")
                statuses.extend([chunk >> 13 & 3] * min(run, left))
            elif not chunk & 0x4000:  # status vector, 14 x 1 bit
                statuses.extend(chunk >> (13 - k) & 1 for k in range(min(14, left)))
            else:  # status vector, 7 x 2 bits
                statuses.extend(chunk >> (12 - 2 * k) & 3 for k in range(min(7, left)))
        packets: list[tuple[int, int | None]] = []
        for k, status in enumerate(statuses):
            seq = (base + k) & 0xFFFF
            if status == _NOT_RECEIVED:
                packets.append((seq, None))
            elif status == _SMALL:
                if i >= len(body):
                    raise RtcpError("transport-cc deltas overrun the packet")
                packets.append((seq, body[i] * TCC_TICK_US))
                i += 1
            elif status == _LARGE:
                if i + 2 > len(body):
                    raise RtcpError("transport-cc deltas overrun the packet")
                packets.append((seq, struct.unpack_from("!h", body, i)[0] * TCC_TICK_US))
                i += 2
            else:
                raise RtcpError("transport-cc reserved status symbol")
        return cls(sender, media, base, ref >> 8, ref & 0xFF, tuple(packets))

    @classmethod
    def parse(cls, data: bytes) -> TransportCc:
        return _parse_as(cls, data)


def _encode_chunks(statuses: list[int]) -> bytes:
    out = bytearray()
    n = len(statuses)
    i = 0
    while i < n:
        first = statuses[i]
        run = 1
        while i + run < n and run < _MAX_RUN and statuses[i + run] == first:
            run += 1
        window = statuses[i : i + 14]
        if run >= 14 or i + run == n:
            out += (first << 13 | run).to_bytes(2, "big")
            i += run
        elif max(window) <= 1:
            chunk = 0x8000
            for k, s in enumerate(window):
                chunk |= s << (13 - k)
            out += chunk.to_bytes(2, "big")
            i += len(window)
        elif run >= 7:
            out += (first << 13 | run).to_bytes(2, "big")
            i += run
        else:
            chunk = 0xC000
            for k, s in enumerate(statuses[i : i + 7]):
                chunk |= s << (12 - 2 * k)
            out += chunk.to_bytes(2, "big")
            i += 7
    return bytes(out)


@dataclass(frozen=True, slots=True)
class RawRtcp:
    """A packet we do not interpret (or an unknown feedback FMT): kept so it can be counted or relayed."""

    pt: int
    count: int  # RC / SC / FMT field
    body: bytes  # everything after the 4-byte common header, padding removed

    def __bytes__(self) -> bytes:
        return _packet(self.pt, self.count, self.body)

    @classmethod
    def parse(cls, data: bytes) -> RawRtcp:
        count, pt, body = _split(data)
        return cls(pt, count, body)


RtcpPacket = SenderReport | ReceiverReport | Sdes | Bye | Nack | Pli | Fir | Remb | TransportCc | RawRtcp
_T = TypeVar("_T")


def _split(data: bytes) -> tuple[int, int, bytes]:
    """Validate one whole packet's common header; return (count, pt, body without padding)."""
    if len(data) < 4:
        raise RtcpError("shorter than the RTCP header")
    b0, pt, words = _HDR.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtcpError("RTCP version is not 2")
    size = 4 * (words + 1)
    if size != len(data):
        raise RtcpError("RTCP length field does not match the packet")
    body = data[4:]
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or pad > len(body):
            raise RtcpError("bad RTCP padding length")
        body = body[:-pad]
    return b0 & 0x1F, pt, body


def parse_packet(data: bytes) -> RtcpPacket:
    """Parse one whole RTCP packet (header included); raises RtcpError if malformed."""
    count, pt, body = _split(data)
    if pt == PT_SR:
        return SenderReport._from_body(count, body)
    if pt == PT_RR:
        return ReceiverReport._from_body(count, body)
    if pt == PT_SDES:
        return Sdes._from_body(count, body)
    if pt == PT_BYE:
        return Bye._from_body(count, body)
    if pt == PT_RTPFB or pt == PT_PSFB:
        if len(body) < 8:
            raise RtcpError("feedback packet shorter than its SSRCs")
        sender, media = _II.unpack_from(body)
        fci = body[8:]
        if pt == PT_RTPFB:
            if count == FMT_NACK:
                return Nack._from_fci(sender, media, fci)
            if count == FMT_TCC:
                return TransportCc._from_body(body)
        else:
            if count == FMT_PLI:
                return Pli(sender, media)
            if count == FMT_FIR:
                return Fir._from_fci(sender, fci)
            if count == FMT_AFB and fci[:4] == _REMB_ID:
                return Remb._from_fci(sender, fci)
    return RawRtcp(pt, count, body)


def _parse_as(cls: type[_T], data: bytes) -> _T:
    packet = parse_packet(data)
    if not isinstance(packet, cls):
        raise RtcpError(f"not a {cls.__name__}: {type(packet).__name__}")
    return packet


def parse_compound(data: bytes) -> tuple[list[RtcpPacket], int]:
    """Parse every packet of a compound on its own: (packets parsed, number of malformed packets).

    The walk follows the length fields; a packet whose body is malformed is counted and skipped. A
    header that cannot be trusted (bad version, length past the end) ends the walk and counts once.
    """
    packets: list[RtcpPacket] = []
    bad = 0
    offset = 0
    size = len(data)
    while offset < size:
        if size - offset < 4 or data[offset] >> 6 != 2:
            return packets, bad + 1
        end = offset + 4 * (((data[offset + 2] << 8) | data[offset + 3]) + 1)
        if end > size:
            return packets, bad + 1
        try:
            packets.append(parse_packet(data[offset:end]))
        except RtcpError:
            bad += 1
        offset = end
    return packets, bad


def serialize(packets: Iterable[RtcpPacket]) -> bytes:
    """A compound packet: the packets' wire forms back to back (RFC 3550 section 6.1)."""
    return b"".join(bytes(p) for p in packets)
