"""Where a consumer may start a simulcast layer: only on a keyframe that is the newest packet of its stream.

Real producer and consumer on a simulated clock. Each case feeds publisher packets (some as RTX copies, as
Chrome's retransmissions and RTX probes send them) and checks which ones reach the subscriber and that its
output sequence has no hole: a receiver that assembles frames in sequence order (aiortc's jitter buffer)
waits forever at a hole the SFU cannot repair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import pytest

from sfu.consumer import Consumer
from sfu.params import Codec, ConsumerParams, Encoding, MediaKind, ProducerParams
from sfu.producer import KeyframeMethod, Producer
from sfu.rtp import EgressWriter, parse_rtp
from sfu.stats import MediaStats

VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97, rtcp_feedback=("nack", "nack pli"))
LAYERS = 3
SSRC = 1000  # layer i: SSRC + i, its RTX SSRC + 10 + i
# VP8 payload descriptor (RFC 7741 section 4.2) without extensions, then the payload header's first byte
# (RFC 6386 section 9.1: P bit 0 = key frame).
HEADS = {"K": b"\x10\x00", "k": b"\x00\x00", "P": b"\x10\x01", "p": b"\x00\x01"}

Part = Literal["K", "k", "P", "p"]  # keyframe start / continuation, delta frame start / continuation


@dataclass(frozen=True)
class Rx:
    """One packet from the publisher: layer, wire seq, frame number (-> timestamp), part, sent as RTX."""

    layer: int
    seq: int
    frame: int
    part: Part
    rtx: bool = False


@dataclass(frozen=True)
class Attach:
    """The subscriber's consumer is created now (it never sees the packets before)."""


@dataclass(frozen=True)
class Pin:
    layer: int


Step = Rx | Attach | Pin


class Sink:
    """The subscriber connection: records what the consumer sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self._tcc = 0

    def next_tcc_seq(self) -> int:
        self._tcc += 1
        return self._tcc

    def send_rtp(self, header: bytes, payload: bytes | memoryview, tcc_seq: int, now: float) -> None:
        self.sent.append(header + bytes(payload))

    def send_probe(self, data: bytes, tcc_seq: int, cluster_id: int, *, now: float) -> None:
        raise AssertionError("no probes here")

    def remove_consumer(self, consumer: Consumer) -> None:
        pass


class Publisher:
    def request_keyframe(self, ssrc: int, method: KeyframeMethod) -> None:
        pass

    def remove_producer(self, producer: Producer) -> None:
        pass


def run(steps: list[Step]) -> tuple[list[tuple[int, int]], list[int], list[bytes]]:
    """Forwarded (layer, publisher seq) in order, their output seqs, their VP8 heads."""
    encodings = tuple(Encoding(rid="qhf"[i], ssrc=SSRC + i, rtx_ssrc=SSRC + 10 + i) for i in range(LAYERS))
    producer = Producer("v", ProducerParams(MediaKind.VIDEO, "1", (VP8,), {}, encodings),
                        sink=Publisher(), stats=MediaStats())
    media = [EgressWriter(SSRC + i, 96) for i in range(LAYERS)]
    rtx = [EgressWriter(SSRC + 10 + i, 97) for i in range(LAYERS)]
    rtx_seq = 0
    sink = Sink()
    consumer: Consumer | None = None
    now = 0.0
    for step in steps:
        now += 0.01
        if isinstance(step, Attach):
            consumer = Consumer("c", producer, ConsumerParams(MediaKind.VIDEO, "m", VP8, 7000, 7001),
                                sink=sink, stats=MediaStats(), rng=random.Random(1))
            producer.consumers.append(consumer)
            continue
        if isinstance(step, Pin):
            assert consumer is not None
            consumer.pin_layer(step.layer, now=now)
            continue
        # The payload names its source packet, so the output can be traced back.
        payload = HEADS[step.part] + bytes((step.layer,)) + step.seq.to_bytes(2, "big") + bytes(20)
        ts = step.frame * 3000
        if step.rtx:
            rtx_seq += 1
            data = rtx[step.layer].build_rtx(marker=False, seq=rtx_seq, ts=ts, osn=step.seq, payload=payload)
        else:
            data = media[step.layer].build(marker=False, seq=step.seq, ts=ts, payload=payload)
        producer.receive(parse_rtp(data), producer.streams[step.layer], step.rtx, now=now)
    forwarded = [(d[14], int.from_bytes(d[15:17], "big")) for d in sink.sent]
    return forwarded, [int.from_bytes(d[2:4], "big") for d in sink.sent], [d[12:14] for d in sink.sent]


CASES: list[tuple[str, list[Step], list[tuple[int, int]]]] = [
    (
        # Seen in a real session: the consumer is created right after a one-packet keyframe and the
        # frames after it; Chrome's RTX probes then resend that keyframe. Starting on the copy left out
        # 101-103 (never sent to this subscriber, so not retransmittable) and aiortc decoded nothing.
        "rtx copy of a keyframe the consumer missed the frames after",
        [Rx(0, 100, 1, "K"), Rx(0, 101, 2, "P"), Rx(0, 102, 3, "P"), Rx(0, 103, 4, "P"), Attach(),
         Rx(0, 100, 1, "K", rtx=True), Rx(0, 100, 1, "K", rtx=True), Rx(0, 104, 5, "P"),
         Rx(0, 105, 6, "K"), Rx(0, 106, 6, "k"), Rx(0, 107, 7, "P")],
        [(0, 105), (0, 106), (0, 107)],
    ),
    (
        "keyframe start lost, its retransmission arrives after the rest of the keyframe",
        [Attach(), Rx(0, 201, 1, "k"), Rx(0, 202, 1, "k"), Rx(0, 200, 1, "K", rtx=True), Rx(0, 203, 2, "P"),
         Rx(0, 204, 3, "K"), Rx(0, 205, 3, "k")],
        [(0, 204), (0, 205)],
    ),
    (
        "keyframe start reordered behind its continuation",
        [Attach(), Rx(0, 301, 1, "k"), Rx(0, 300, 1, "K"), Rx(0, 302, 2, "P"), Rx(0, 303, 3, "K"),
         Rx(0, 304, 4, "P")],
        [(0, 303), (0, 304)],
    ),
    (
        "in-order keyframe; later RTX copies of it are duplicates",
        [Attach(), Rx(0, 399, 0, "P"), Rx(0, 400, 1, "K"), Rx(0, 401, 1, "k"), Rx(0, 400, 1, "K", rtx=True),
         Rx(0, 402, 2, "P"), Rx(0, 401, 1, "k", rtx=True), Rx(0, 403, 3, "P")],
        [(0, 400), (0, 401), (0, 402), (0, 403)],
    ),
    (
        "lost packet after the keyframe is repaired by the publisher's retransmission",
        [Attach(), Rx(0, 410, 1, "K"), Rx(0, 412, 2, "P"), Rx(0, 411, 1, "k", rtx=True), Rx(0, 413, 3, "P")],
        [(0, 410), (0, 412), (0, 411), (0, 413)],
    ),
    (
        "down-switch: an old keyframe copy on the new layer is not a switch point, the next keyframe is",
        [Attach(), Rx(2, 500, 1, "K"), Rx(0, 700, 1, "K"), Rx(2, 501, 1, "k"), Rx(0, 701, 2, "P"),
         Rx(2, 502, 2, "P"), Pin(0), Rx(0, 700, 1, "K", rtx=True), Rx(2, 503, 3, "P"), Rx(0, 702, 3, "P"),
         Rx(2, 504, 4, "P"), Rx(0, 703, 4, "K"), Rx(2, 505, 5, "P"), Rx(0, 704, 4, "k"), Rx(0, 705, 5, "P")],
        [(2, 500), (2, 501), (2, 502), (2, 503), (2, 504), (0, 703), (0, 704), (0, 705)],
    ),
]


@pytest.mark.parametrize(("steps", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layer_starts_only_where_the_output_stays_complete(steps: list[Step],
                                                          expected: list[tuple[int, int]]) -> None:
    forwarded, out_seqs, heads = run(steps)
    assert forwarded == expected
    assert heads[0] == HEADS["K"], "the subscriber's first packet starts a keyframe"
    first = out_seqs[0]
    # Every output seq from the first one on, none missing: nothing the subscriber waits for forever.
    assert sorted((s - first) & 0xFFFF for s in out_seqs) == list(range(len(out_seqs)))
