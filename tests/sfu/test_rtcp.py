from __future__ import annotations

import pytest
from aiortc import rtp as artp
from hypothesis import given
from hypothesis import strategies as st

from sfu.rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    RawRtcp,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    Sdes,
    SdesChunk,
    SenderReport,
    TransportCc,
    parse_compound,
    parse_packet,
    serialize,
)

BLOCK = ReportBlock(ssrc=0x11223344, fraction_lost=25, cumulative_lost=-3, highest_seq=0x1_0002, jitter=40,
                    lsr=0xAABBCCDD, dlsr=65536)

SAMPLES: list[RtcpPacket] = [
    SenderReport(1, 0xE0000001_80000000, 90000, 10, 1000, ()),
    SenderReport(1, 2, 3, 4, 5, (BLOCK, BLOCK)),
    ReceiverReport(7, ()),
    ReceiverReport(7, (BLOCK,)),
    Sdes((SdesChunk(5, ((1, "cname-x"),)), SdesChunk(6, ((1, "abc"), (2, "name"))), SdesChunk(7, ()))),
    Bye((1, 2), None),
    Bye((3,), "leaving"),
    Bye((), ""),
    Nack(1, 2, (100,)),
    Nack(1, 2, (65534, 65535, 0, 1, 17, 40)),
    Pli(1, 2),
    Fir(1, ((2, 3), (4, 255))),
    Remb(1, 1_500_000, (2, 3)),
    Remb(1, 0, ()),
    TransportCc(1, 2, 65534, 100, 3, ((65534, 250), (65535, None), (0, -1000), (1, 63_750))),
    TransportCc(1, 2, 5, 0xFFFFFF, 255, ()),
    RawRtcp(207, 0, b"\x00\x00\x00\x01xr"),  # XR kept raw, padded
    RawRtcp(205, 3, b"\x00\x00\x00\x01\x00\x00\x00\x02"),  # TMMBR: unknown FMT
    RawRtcp(206, 15, b"\x00\x00\x00\x01\x00\x00\x00\x00ABCD"),  # AFB that is not REMB
]


@pytest.mark.parametrize("packet", SAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip(packet: RtcpPacket) -> None:
    data = bytes(packet)
    assert len(data) % 4 == 0
    assert parse_packet(data) == packet
    assert type(packet).parse(data) == packet


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (Pli(0x01020304, 0x05060708), "81ce0002 01020304 05060708"),
        (Nack(1, 2, (65535, 0, 15)), "81cd0003 00000001 00000002 ffff8001"),
        (Nack(1, 2, (10, 27)), "81cd0004 00000001 00000002 000a0000 001b0000"),
        (Fir(9, ((0xAABBCCDD, 7),)), "84ce0004 00000009 00000000 aabbccdd 07000000"),
        (Remb(1, 1_000_000, (0x10,)), "8fce0005 00000001 00000000 52454d42 010bd090 00000010"),
        (Remb(1, 300_000, ()), "8fce0004 00000001 00000000 52454d42 000649f0"),
        (ReceiverReport(5, (ReportBlock(6, 1, -1, 2, 3, 4, 5),)),
         "81c90007 00000005 00000006 01ffffff 00000002 00000003 00000004 00000005"),
        (Bye((1,), "x"), "81cb0002 00000001 01780000"),  # reason padded with nulls (6.6)
        # base 0, 3 packets, ref 1, fb 2: run-length chunk (small, 3), deltas 1, 2, 3 ticks, 3 pad bytes.
        (TransportCc(1, 2, 0, 1, 2, ((0, 250), (1, 500), (2, 750))),
         "afcd0006 00000001 00000002 00000003 00000102 20030102 03000003"),
        # 1-bit status vector: received, lost, received.
        (TransportCc(1, 2, 0, 0, 0, ((0, 0), (1, None), (2, 0), (3, 0), (4, None))),
         "afcd0006 00000001 00000002 00000005 00000000 ac000000 00000003"),
        # 2-bit status vector: small then large delta (-1 tick).
        (TransportCc(1, 2, 7, 0, 0, ((7, 0), (8, -250))),
         "afcd0006 00000001 00000002 00070002 00000000 d80000ff ff000003"),
    ],
)
def test_wire_format(packet: RtcpPacket, wire: str) -> None:
    assert bytes(packet).hex() == wire.replace(" ", "")
    assert parse_packet(bytes.fromhex(wire)) == packet


def test_nack_parses_blp_across_wrap() -> None:
    assert Nack.parse(bytes.fromhex("81cd0003 00000001 00000002 fffe8003".replace(" ", ""))).lost == (
        65534, 65535, 0, 65534 + 16 - 65536)


@pytest.mark.parametrize(
    ("bitrate", "expected"),
    [(0, 0), (262143, 262143), (262144, 262144), (1_000_001, 1_000_000), (2**40 + 12345, 2**40)],
)
def test_remb_mantissa_rounds_down(bitrate: int, expected: int) -> None:
    assert Remb.parse(bytes(Remb(1, bitrate, ()))).bitrate_bps == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("80c8", "shorter"),
        ("40c80000", "version"),
        ("80c80001 00000001", "sender info"),
        ("81c90001 00000001", "report count"),
        ("81ca0001 00000001", "terminator"),
        ("81ca0002 00000001 0105ab00", "overruns"),
        ("82cb0001 00000001", "source count"),
        ("81cb0002 00000001 05000000", "reason"),
        ("81cd0001 00000001", "feedback"),
        ("81cd0003 00000001 00000002 0001", "length field"),
        ("81cd0003 00000001 00000002 000100", "length field"),
        ("8fcd0004 00000001 00000002 00000002 00000000", "status chunks"),
        ("8fcd0005 00000001 00000002 00000003 00000000 20030000", "deltas overrun"),
        ("8fcd0005 00000001 00000002 00000001 00000000 60010000", "reserved"),
        ("8fcd0005 00000001 00000002 00000001 00000000 20000000", "run length of zero"),
        ("84ce0003 00000001 00000000 00000002", "FIR"),
        ("8fce0003 00000001 00000000 52454d42", "truncated REMB"),
        ("8fce0004 00000001 00000000 52454d42 01000000", "SSRC count"),
        ("a0c90001 00000000", "padding"),
        ("a0c90001 00000005", "padding"),
    ],
)
def test_malformed(data: str, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        parse_packet(bytes.fromhex(data.replace(" ", "")))


def test_compound_keeps_good_packets_around_bad_ones() -> None:
    bad = bytes.fromhex("81c90001 00000001".replace(" ", ""))  # claims a report block it lacks
    good = [Pli(1, 2), ReceiverReport(3, (BLOCK,)), Fir(4, ((5, 6),))]
    data = bytes(good[0]) + bad + bytes(good[1]) + bad + bytes(good[2])
    assert parse_compound(data) == (good, 2)


@pytest.mark.parametrize(
    ("tail", "parsed", "bad"),
    [
        (b"", 2, 0),
        (b"\x81", 2, 1),  # trailing junk shorter than a header
        (bytes.fromhex("81c90005 00000001"), 2, 1),  # length past the end
        (bytes.fromhex("01c90001 00000001"), 2, 1),  # version 0 ends the walk
    ],
)
def test_compound_tail(tail: bytes, parsed: int, bad: int) -> None:
    packets, malformed = parse_compound(serialize([Pli(1, 2), Remb(1, 5, (9,))]) + tail)
    assert (len(packets), malformed) == (parsed, bad)


def test_transport_cc_long_runs_and_arrivals() -> None:
    packets = tuple(((65000 + k) & 0xFFFF, None if 100 <= k < 9000 else 250) for k in range(10000))
    fb = TransportCc(1, 2, 65000, 10, 1, packets)
    data = bytes(fb)
    assert len(data) < 1200  # run-length chunks, not vectors, for the long loss run
    back = TransportCc.parse(data)
    assert back == fb
    arrivals = back.arrivals_us()
    assert arrivals[0] == (65000, 640_250)
    assert arrivals[100] == (65100, None)
    assert arrivals[-1] == (74999 & 0xFFFF, 640_000 + 250 * 1100)


@pytest.mark.parametrize(
    "packet",
    [
        TransportCc(1, 2, 0, 0, 0, ((0, 1),)),  # not a multiple of 250 us
        TransportCc(1, 2, 0, 0, 0, ((0, 250 * 40000),)),  # beyond a signed 16-bit delta
        TransportCc(1, 2, 0, 0, 0, ((1, 0),)),  # does not start at base_seq
        ReceiverReport(1, (BLOCK,) * 32),
        Bye((1,), "x" * 256),
        Sdes((SdesChunk(1, ((1, "x" * 256),)),)),
    ],
)
def test_unserialisable(packet: RtcpPacket) -> None:
    with pytest.raises(RtcpError):
        bytes(packet)


# Cross-check against aiortc for the types it gets right (SR, RR, PLI, NACK without wraparound).


def _aiortc_block(b: ReportBlock) -> artp.RtcpReceiverInfo:
    return artp.RtcpReceiverInfo(ssrc=b.ssrc, fraction_lost=b.fraction_lost, packets_lost=b.cumulative_lost,
                                 highest_sequence=b.highest_seq, jitter=b.jitter, lsr=b.lsr, dlsr=b.dlsr)


def test_matches_aiortc_sr_rr() -> None:
    sr = artp.RtcpSrPacket(ssrc=1, sender_info=artp.RtcpSenderInfo(ntp_timestamp=2**63 + 5, rtp_timestamp=6,
                                                                     packet_count=7, octet_count=8),
                           reports=[_aiortc_block(BLOCK)])
    rr = artp.RtcpRrPacket(ssrc=9, reports=[_aiortc_block(BLOCK), _aiortc_block(BLOCK)])
    ours = [SenderReport(1, 2**63 + 5, 6, 7, 8, (BLOCK,)), ReceiverReport(9, (BLOCK, BLOCK))]
    assert bytes(sr) + bytes(rr) == serialize(ours)
    assert parse_compound(bytes(sr) + bytes(rr)) == (ours, 0)
    assert artp.RtcpPacket.parse(serialize(ours)) == [sr, rr]


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=40, unique=True).map(sorted),
       st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_matches_aiortc_nack(lost: list[int], sender: int, media: int) -> None:
    ref = artp.RtcpRtpfbPacket(fmt=1, ssrc=sender, media_ssrc=media, lost=lost)
    assert bytes(ref) == bytes(Nack(sender, media, tuple(lost)))
    assert sorted(Nack.parse(bytes(ref)).lost) == lost


def test_matches_aiortc_pli() -> None:
    ref = artp.RtcpPsfbPacket(fmt=1, ssrc=3, media_ssrc=4)
    assert bytes(ref) == bytes(Pli(3, 4))
    assert Pli.parse(bytes(ref)) == Pli(3, 4)


# Hypothesis: arbitrary bytes and generated valid packets.

u32 = st.integers(0, 2**32 - 1)
blocks = st.builds(ReportBlock, u32, st.integers(0, 255), st.integers(-(2**23), 2**23 - 1), u32, u32, u32, u32)
text = st.text(max_size=30).filter(lambda s: len(s.encode()) <= 255)
tcc_deltas = st.none() | st.integers(-(2**15), 2**15 - 1).map(lambda t: t * 250) | st.integers(0, 255).map(
    lambda t: t * 250)


@st.composite
def transport_cc(draw: st.DrawFn) -> TransportCc:
    base = draw(st.integers(0, 65535))
    deltas = draw(st.lists(tcc_deltas, max_size=60))
    return TransportCc(draw(u32), draw(u32), base, draw(st.integers(0, 2**24 - 1)), draw(st.integers(0, 255)),
                       tuple(((base + i) & 0xFFFF, d) for i, d in enumerate(deltas)))


packets = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32,
              st.lists(blocks, max_size=3).map(tuple)),
    st.builds(ReceiverReport, u32, st.lists(blocks, max_size=3).map(tuple)),
    st.builds(Sdes, st.lists(st.builds(SdesChunk, u32, st.lists(st.tuples(st.integers(1, 8), text),
                                                                max_size=3).map(tuple)), max_size=3).map(tuple)),
    st.builds(Bye, st.lists(u32, max_size=5).map(tuple), st.none() | text),
    st.builds(Pli, u32, u32),
    st.builds(Fir, u32, st.lists(st.tuples(u32, st.integers(0, 255)), max_size=4).map(tuple)),
    st.builds(Remb, u32, st.integers(0, 0x3FFFF), st.lists(u32, max_size=4).map(tuple)),
    transport_cc(),
    st.builds(RawRtcp, st.integers(207, 223), st.integers(0, 31), st.binary(max_size=20)),
)


@given(st.lists(packets, max_size=5))
def test_round_trip_generated(pkts: list[RtcpPacket]) -> None:
    assert parse_compound(serialize(pkts)) == (pkts, 0)


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=50, unique=True))
def test_nack_round_trip_any_set(lost: list[int]) -> None:
    assert sorted(Nack.parse(bytes(Nack(1, 2, tuple(lost)))).lost) == sorted(lost)


@given(st.binary(max_size=120))
def test_fuzz_compound(data: bytes) -> None:
    packets, bad = parse_compound(data)
    assert bad >= 0
    for p in packets:
        bytes(p)  # whatever parsed serialises


@given(st.binary(min_size=4, max_size=60), st.sampled_from([200, 201, 202, 203, 205, 206]), st.integers(0, 31),
       st.booleans())
def test_fuzz_typed_bodies(body: bytes, pt: int, count: int, padded: bool) -> None:
    body = body[: len(body) // 4 * 4]
    data = bytes(((0xA0 if padded else 0x80) | count, pt)) + (len(body) // 4).to_bytes(2, "big") + body
    try:
        parse_packet(data)
    except RtcpError:
        pass
