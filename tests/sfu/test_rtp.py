from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.rtp import RtpPacket as AiortcRtpPacket
from hypothesis import given
from hypothesis import strategies as st

from sfu.params import HeaderExtension
from sfu.rtp import (
    EgressWriter,
    ExtIds,
    RtpError,
    SeqUnwrapper,
    TsUnwrapper,
    is_rtcp,
    parse_rtp,
    rtx_original_seq,
    rtx_payload,
)

IDS = ExtIds(mid=1, rid=2, repaired_rid=3, transport_cc=4, abs_send_time=5, audio_level=6)


def build(*, pt: int = 96, seq: int = 1, ts: int = 2, ssrc: int = 3, marker: bool = False,
          csrcs: tuple[int, ...] = (), ext: bytes | None = None, profile: int = 0xBEDE, payload: bytes = b"",
          pad: int = 0) -> bytes:
    """A reference RTP writer for tests: any csrc list, raw extension block, padding."""
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext is not None else 0) | len(csrcs)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        ext = ext + bytes(-len(ext) % 4)
        out += struct.pack("!HH", profile, len(ext) // 4) + ext
    out += payload
    if pad:
        out += bytes(pad - 1) + bytes((pad,))
    return out


def one(ext_id: int, value: bytes) -> bytes:
    return bytes(((ext_id << 4) | (len(value) - 1),)) + value


def two(ext_id: int, value: bytes) -> bytes:
    return bytes((ext_id, len(value))) + value


@pytest.mark.parametrize(
    ("ext", "profile", "field", "expected"),
    [
        (one(1, b"0"), 0xBEDE, "mid", "0"),
        (one(2, b"hi"), 0xBEDE, "rid", "hi"),
        (one(3, b"lo"), 0xBEDE, "repaired_rid", "lo"),
        (one(4, b"\x12\x34"), 0xBEDE, "tcc_seq", 0x1234),
        (one(5, b"\x01\x02\x03"), 0xBEDE, "abs_send_time", 0x010203),
        (one(6, b"\xa5"), 0xBEDE, "audio_level", 0x25),
        (one(6, b"\xa5"), 0xBEDE, "voice_activity", True),
        (one(6, b"\x25"), 0xBEDE, "voice_activity", False),
        (b"\x00\x00" + one(4, b"\xff\xff"), 0xBEDE, "tcc_seq", 0xFFFF),  # leading padding bytes
        (one(7, b"zz") + one(1, b"a"), 0xBEDE, "mid", "a"),  # unknown id skipped
        (b"\xf0" + one(1, b"a"), 0xBEDE, "mid", None),  # id 15 stops processing
        (two(1, b"video"), 0x1000, "mid", "video"),
        (two(4, b"\x00\x07"), 0x1003, "tcc_seq", 7),  # appbits ignored
        (b"\x00" + two(2, b"q" * 20), 0x1000, "rid", "q" * 20),
        (two(9, b""), 0x1000, "mid", None),
        (one(1, b"a"), 0xABCD, "mid", None),  # unknown profile: block skipped
    ],
)
def test_extensions(ext: bytes, profile: int, field: str, expected: object) -> None:
    pkt = parse_rtp(build(ext=ext, profile=profile, payload=b"pay"), IDS)
    assert getattr(pkt, field) == expected
    assert bytes(pkt.payload) == b"pay"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter"),
        (b"\x80" * 11, "shorter"),
        (b"\x40" + bytes(11), "version"),
        (b"\xc0" + bytes(11), "version"),
        (b"\x82" + bytes(15), "CSRC"),  # 2 csrcs, 1 present
        (b"\x90" + bytes(13), "truncated header extension"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "overruns"),
        (b"\xa0" + bytes(11), "padding"),  # padding count 0
        (b"\xa0" + bytes(10) + b"\x0e", "padding"),  # padding 14 > 12-byte packet
        (build(ext=b"\x13\x00", payload=b""), "overruns the block"),  # one-byte element 2B in 4B block at end
        (build(ext=b"\x00\x00\x00\x4f"), "overruns the block"),
        (build(ext=b"\x01\x09", profile=0x1000), "overruns"),
        (build(ext=b"\x40", payload=b""), "transport-cc"),
        (build(ext=one(1, b"\xff")), "non-ASCII"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtp(data, IDS)


def test_fixed_header_csrc_and_padding() -> None:
    data = build(pt=111, seq=65535, ts=0xFFFFFFFF, ssrc=0xDEADBEEF, marker=True, csrcs=(1, 2), payload=b"abc", pad=5)
    pkt = parse_rtp(data, IDS)
    assert (pkt.pt, pkt.seq, pkt.ts, pkt.ssrc, pkt.marker) == (111, 65535, 0xFFFFFFFF, 0xDEADBEEF, True)
    assert pkt.csrcs == (1, 2) and pkt.padding and not pkt.extension and pkt.version == 2
    assert bytes(pkt.payload) == b"abc"
    assert (pkt.payload_offset, pkt.payload_end) == (20, 23)


def test_padding_only() -> None:
    w = EgressWriter(5, 96, transport_cc_id=4)
    pkt = parse_rtp(w.build_padding(seq=9, ts=10, tcc_seq=11, size=200), IDS)
    assert pkt.is_padding_only and pkt.payload_end == pkt.payload_offset
    assert pkt.tcc_seq == 11 and len(pkt.data) == 12 + 8 + 200


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x80\xc8", True),  # SR
        (b"\x81\xcd", True),  # RTPFB
        (b"\x80\xdf", True),
        (b"\x80\xe0", False),  # PT 96 with marker
        (b"\x80\x60", False),
        (b"\x80\xbf", False),
        (b"\x80", False),
    ],
)
def test_is_rtcp(data: bytes, expected: bool) -> None:
    assert is_rtcp(data) is expected


@pytest.mark.parametrize(
    ("tcc_id", "al_id", "tcc_seq", "level", "ext_len"),
    [
        (None, None, 5, 7, 0),
        (4, None, 65535, None, 8),
        (4, 6, 70000, None, 8),  # ids given but no level: omitted; seq truncated to 16 bits
        (None, 6, None, 127, 8),
        (4, 6, 1, 0, 12),
    ],
)
def test_egress_writer_shapes(tcc_id: int | None, al_id: int | None, tcc_seq: int | None, level: int | None,
                              ext_len: int) -> None:
    w = EgressWriter(0x01020304, 100, transport_cc_id=tcc_id, audio_level_id=al_id)
    data = w.build(marker=True, seq=0x1_0005, ts=0x1_0000_0009, tcc_seq=tcc_seq, audio_level=level,
                   voice_activity=True, payload=memoryview(b"payload"))
    assert len(data) == 12 + ext_len + 7
    pkt = parse_rtp(data, IDS)
    assert (pkt.ssrc, pkt.pt, pkt.seq, pkt.ts, pkt.marker) == (0x01020304, 100, 5, 9, True)
    assert pkt.tcc_seq == (None if tcc_id is None or tcc_seq is None else tcc_seq & 0xFFFF)
    assert pkt.audio_level == (None if al_id is None else level)
    assert bytes(pkt.payload) == b"payload"


def test_rtx_round_trip() -> None:
    w = EgressWriter(77, 97, transport_cc_id=4)
    data = w.build_rtx(marker=False, seq=3, ts=4, osn=65535, tcc_seq=8, payload=b"orig")
    pkt = parse_rtp(data, IDS)
    assert rtx_original_seq(pkt) == 65535
    assert bytes(rtx_payload(pkt)) == b"orig"
    with pytest.raises(RtpError):
        rtx_original_seq(parse_rtp(build(payload=b"x"), IDS))


def test_ext_ids_from_map() -> None:
    ids = ExtIds.from_map({HeaderExtension.MID: 9, HeaderExtension.TRANSPORT_CC: 3})
    assert ids == ExtIds(mid=9, transport_cc=3)
    with pytest.raises(ValueError):
        ExtIds(mid=0)


@pytest.mark.parametrize(
    ("seqs", "expected"),
    [
        ([1, 2, 3], [1, 2, 3]),
        ([65534, 65535, 0, 1], [65534, 65535, 65536, 65537]),
        ([65535, 1, 0, 2], [65535, 65537, 65536, 65538]),  # reordered across the wrap
        ([0, 65535, 1], [0, -1, 1]),  # late packet from before the first
        ([100, 100], [100, 100]),
        ([0, 32767, 0], [0, 32767, 0]),
        ([0, 32768], [0, -32768]),  # exactly half-way counts as late
        ([60000, 10000, 40000, 5000], [60000, 75536, 105536, 136072]),
    ],
)
def test_seq_unwrapper(seqs: list[int], expected: list[int]) -> None:
    u = SeqUnwrapper()
    assert [u.unwrap(s) for s in seqs] == expected


@pytest.mark.parametrize(
    ("tss", "expected"),
    [
        ([0xFFFFFF00, 0x100], [0xFFFFFF00, 0x100000100]),
        ([0x100, 0xFFFFFF00], [0x100, -0x100]),
        ([5, 3000, 1000], [5, 3000, 1000]),
    ],
)
def test_ts_unwrapper(tss: list[int], expected: list[int]) -> None:
    u = TsUnwrapper()
    assert [u.unwrap(t) for t in tss] == expected


def _aiortc_map() -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri=HeaderExtension.MID.value),
        RTCRtpHeaderExtensionParameters(id=2, uri=HeaderExtension.RID.value),
        RTCRtpHeaderExtensionParameters(id=3, uri=HeaderExtension.REPAIRED_RID.value),
        RTCRtpHeaderExtensionParameters(id=4, uri=HeaderExtension.TRANSPORT_CC.value),
        RTCRtpHeaderExtensionParameters(id=5, uri=HeaderExtension.ABS_SEND_TIME.value),
        RTCRtpHeaderExtensionParameters(id=6, uri=HeaderExtension.AUDIO_LEVEL.value),
    ]))
    return m


AIORTC_MAP = _aiortc_map()


@given(
    pt=st.integers(0, 127), seq=st.integers(0, 65535), ts=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1), marker=st.booleans(),
    mid=st.none() | st.text("abc0123", min_size=1, max_size=16),
    rid=st.none() | st.text("hlmq", min_size=1, max_size=16),
    tcc=st.none() | st.integers(0, 65535), ast=st.none() | st.integers(0, 2**24 - 1),
    level=st.none() | st.tuples(st.booleans(), st.integers(0, 127)),
    payload=st.binary(max_size=64),
)
def test_matches_aiortc(pt: int, seq: int, ts: int, ssrc: int, marker: bool, mid: str | None, rid: str | None,
                        tcc: int | None, ast: int | None, level: tuple[bool, int] | None, payload: bytes) -> None:
    ref = AiortcRtpPacket(payload_type=pt, marker=int(marker), sequence_number=seq, timestamp=ts, ssrc=ssrc,
                          payload=payload)
    ref.extensions.mid = mid
    ref.extensions.rtp_stream_id = rid
    ref.extensions.transport_sequence_number = tcc
    ref.extensions.abs_send_time = ast
    ref.extensions.audio_level = level
    data = ref.serialize(AIORTC_MAP)
    pkt = parse_rtp(data, IDS)
    back = AiortcRtpPacket.parse(data, AIORTC_MAP)
    assert (pkt.pt, pkt.seq, pkt.ts, pkt.ssrc, pkt.marker) == (pt, seq, ts, ssrc, marker)
    assert bytes(pkt.payload) == back.payload == payload
    assert (pkt.mid, pkt.rid, pkt.tcc_seq, pkt.abs_send_time) == (mid, rid, tcc, ast)
    got_level = None if pkt.audio_level is None else (pkt.voice_activity, pkt.audio_level)
    assert got_level == level


@given(st.binary(max_size=80))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        pkt = parse_rtp(data, IDS)
    except RtpError:
        return
    assert 12 <= pkt.payload_offset <= pkt.payload_end <= len(data)


@given(st.binary(min_size=4, max_size=40), st.sampled_from([0xBEDE, 0x1000, 0x1001]), st.integers(0, 3))
def test_fuzz_extension_blocks(body: bytes, profile: int, pad: int) -> None:
    data = build(ext=body, profile=profile, payload=b"p", pad=pad)
    try:
        pkt = parse_rtp(data, IDS)
    except RtpError:
        return
    assert bytes(pkt.payload) == b"p"


@given(
    csrcs=st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
    elements=st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=4),
    payload=st.binary(max_size=50), pad=st.integers(0, 255),
)
def test_round_trip_generated(csrcs: tuple[int, ...], elements: list[tuple[int, bytes]], payload: bytes,
                              pad: int) -> None:
    ext = b"".join(one(i, v) for i, v in elements) if elements else None
    data = build(seq=4, csrcs=csrcs, ext=ext, payload=payload, pad=pad)
    pkt = parse_rtp(data, ExtIds())
    assert pkt.csrcs == csrcs and pkt.seq == 4
    assert bytes(pkt.payload) == payload
