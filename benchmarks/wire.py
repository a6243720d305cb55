"""Per-call cost of the media-plane wire layer (microseconds): `python benchmarks/wire.py`."""

from __future__ import annotations

import timeit
from collections.abc import Callable

from sfu.munger import SeqMunger, TsMunger
from sfu.nack import NackGenerator, RetransmissionBuffer
from sfu.rtcp import parse_compound
from sfu.rtp import EgressWriter, ExtIds, parse_rtp
from sfu.twcc import TwccRecorder, TwccSender
from sfu.vp8 import Vp8Munger, is_keyframe

IDS = ExtIds(mid=1, rid=2, repaired_rid=3, transport_cc=4, abs_send_time=5, audio_level=6)


def _video_packet() -> bytes:
    # Chrome-like: mid, rid, abs-send-time and transport-cc in a one-byte extension block, 1,100 B VP8 payload.
    ext = b"\x10" + b"0" + b"\x21" + b"hi" + b"\x52" + b"\x01\x02\x03" + b"\x41" + b"\x12\x34"
    ext += bytes(-len(ext) % 4)
    vp8 = bytes((0x90, 0xE0, 0x81, 0x23, 0x05, 0x40)) + b"\x11" + bytes(1093)
    return (bytes((0x90, 0x60, 0x12, 0x34)) + (90000).to_bytes(4, "big") + (0xABCDEF).to_bytes(4, "big")
            + (0xBEDE).to_bytes(2, "big") + (len(ext) // 4).to_bytes(2, "big") + ext + vp8)


def main() -> None:
    data = _video_packet()
    pkt = parse_rtp(data, IDS)
    payload = pkt.payload
    writer = EgressWriter(0x1234, 96, transport_cc_id=3, audio_level_id=None)
    vp8 = Vp8Munger()
    vp8.rewrite(payload)
    vp8.switch()
    vp8.rewrite(bytes((0x90, 0xE0, 0x80, 0x01, 0x01, 0x40)) + b"\x11")  # offsets now non-zero: copies
    seqm, tsm = SeqMunger(1000), TsMunger(90000, 0)
    buf, gen = RetransmissionBuffer(500), NackGenerator()
    rec, snd = TwccRecorder(1, 2), TwccSender()
    state = {"seq": 0}

    def seq_munge() -> None:
        state["seq"] += 1
        seqm.map(state["seq"])

    def nack_on_packet() -> None:
        state["seq"] += 1
        gen.on_packet(state["seq"], now=state["seq"] * 0.001)

    def twcc_record() -> None:
        state["seq"] += 1
        rec.record(state["seq"] & 0xFFFF, now=state["seq"] * 0.001)

    def twcc_sent() -> None:
        snd.on_sent(snd.next_seq(), 1200, now=state["seq"] * 0.001)
        state["seq"] += 1

    def feedback_100() -> None:
        for i in range(100):
            rec.record(i, now=i * 0.001)
        for fb in rec.build_feedback(now=1.0):
            parse_compound(fb)

    cases: list[tuple[str, Callable[[], object], int]] = [
        ("parse_rtp (4 extensions, 1.1 kB)", lambda: parse_rtp(data, IDS), 1),
        ("parse_rtp (no ext ids)", lambda: parse_rtp(data), 1),
        ("EgressWriter.build (tcc)", lambda: writer.build(marker=True, seq=5, ts=9, tcc_seq=7, payload=payload), 1),
        ("EgressWriter.build_rtx", lambda: writer.build_rtx(marker=False, seq=5, ts=9, osn=4, tcc_seq=7,
                                                            payload=payload), 1),
        ("vp8.is_keyframe", lambda: is_keyframe(payload), 1),
        ("Vp8Munger.rewrite (copy)", lambda: vp8.rewrite(payload), 1),
        ("SeqMunger.map", seq_munge, 1),
        ("TsMunger.map", lambda: tsm.map(90000, now=1.0), 1),
        ("RetransmissionBuffer.store", lambda: buf.store(7, data, now=1.0), 1),
        ("RetransmissionBuffer.get", lambda: buf.get(7, now=1.0, rtt=0.0), 1),
        ("NackGenerator.on_packet", nack_on_packet, 1),
        ("TwccRecorder.record", twcc_record, 1),
        ("TwccSender.next_seq+on_sent", twcc_sent, 1),
        ("TWCC feedback build+parse (per pkt)", feedback_100, 100),
    ]
    print(f"{'operation':40} {'us/call':>8}")
    for name, fn, per in cases:
        n = 20_000 // per
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n / per
        print(f"{name:40} {best * 1e6:8.2f}")


if __name__ == "__main__":
    main()
