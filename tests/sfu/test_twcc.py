from __future__ import annotations

import pytest

from adaptation.types import PacketResult
from sfu.rtcp import TransportCc, parse_compound
from sfu.twcc import TwccRecorder, TwccSender


def run(sender: TwccSender, recorder: TwccRecorder, arrivals: dict[int, float], *, now: float) -> list[PacketResult]:
    """Feed recorded arrivals (seq16 -> time) to the recorder, build feedback, hand it to the sender."""
    for seq, t in arrivals.items():  # dict order = arrival order, may differ from seq order
        recorder.record(seq, now=t)
    results: list[PacketResult] = []
    for data in recorder.build_feedback(now=now):
        packets, bad = parse_compound(data)
        assert bad == 0 and len(packets) == 1 and isinstance(packets[0], TransportCc)
        results += sender.on_feedback(packets[0], now=now)
    return results


def send(sender: TwccSender, n: int, *, start: float, gap: float = 0.001) -> list[int]:
    seqs = []
    for i in range(n):
        seq = sender.next_seq()
        sender.on_sent(seq, 1000 + i, now=start + i * gap)
        seqs.append(seq)
    return seqs


@pytest.mark.parametrize(
    ("initial", "n", "lost", "reorder", "arrival_gap"),
    [
        pytest.param(0, 20, set(), False, 0.001, id="simple"),
        pytest.param(65530, 40, {3, 4, 10}, False, 0.0013, id="wrap-with-losses"),
        pytest.param(100, 30, {0, 29}, True, 0.0021, id="reordered-first-and-last-lost"),
        pytest.param(65000, 1000, {i for i in range(1000) if i % 7 == 0}, False, 0.0005, id="split-when-large"),
        pytest.param(5, 10, set(), False, 1.5, id="large-deltas"),
        pytest.param(5, 4, set(), False, 10.0, id="delta-overflow-splits"),
    ],
)
def test_recovers_arrival_pattern(initial: int, n: int, lost: set[int], reorder: bool, arrival_gap: float) -> None:
    sender = TwccSender(initial)
    recorder = TwccRecorder(1, 2)
    seqs = send(sender, n, start=100.0)
    expected = {seqs[i]: 1000.0 + 0.0371 + i * arrival_gap for i in range(n) if i not in lost}
    order = sorted(expected, key=lambda s: -expected[s]) if reorder else list(expected)
    results = run(sender, recorder, {s: expected[s] for s in order}, now=2000.0)
    first, last = min(seqs.index(s) for s in expected), max(seqs.index(s) for s in expected)
    assert [r.seq & 0xFFFF for r in results] == seqs[first : last + 1]
    for r in results:
        assert r.size == 1000 + seqs.index(r.seq & 0xFFFF)
        if r.seq & 0xFFFF in expected:
            assert r.arrival_time is not None
            assert abs(r.arrival_time - expected[r.seq & 0xFFFF]) <= 125e-6 + 1e-9
        else:
            assert r.arrival_time is None
    assert [r.seq for r in results] == sorted(r.seq for r in results)  # unwrapped, increasing


def test_losses_between_feedbacks_and_late_arrival() -> None:
    sender = TwccSender(0)
    recorder = TwccRecorder(1, 2)
    send(sender, 6, start=0.0)
    first = run(sender, recorder, {0: 1.0, 1: 1.001}, now=1.1)
    assert [(r.seq, r.received) for r in first] == [(0, True), (1, True)]
    assert recorder.fb_count == 1
    # 2 and 3 never arrive before 4: reported lost in the next feedback, which starts right after 1.
    second = run(sender, recorder, {4: 1.004}, now=1.2)
    assert [(r.seq, r.received) for r in second] == [(2, False), (3, False), (4, True)]
    # 3 turns up late: reported received once, then never again.
    third = run(sender, recorder, {3: 1.25, 5: 1.26}, now=1.3)
    assert [(r.seq, r.received) for r in third] == [(3, True), (5, True)]
    assert recorder.build_feedback(now=1.4) == []
    assert recorder.fb_count == 3


def test_sender_history_is_bounded() -> None:
    sender = TwccSender(0)
    sender.on_sent(sender.next_seq(), 100, now=0.0)
    sender.on_sent(sender.next_seq(), 100, now=2.5)  # evicts seq 0
    fb = TransportCc(1, 2, 0, 0, 0, ((0, 1000), (1, 1000)))
    assert [r.seq for r in sender.on_feedback(fb, now=3.0)] == [1]


def test_sender_unwraps_reference_time_and_probe_cluster() -> None:
    sender = TwccSender(65535)
    for seq in (sender.next_seq(), sender.next_seq()):
        sender.on_sent(seq, 50, now=0.0, probe_cluster=7)
    a = sender.on_feedback(TransportCc(1, 2, 65535, 0xFFFFFF, 0, ((65535, 250),)), now=1.0)
    b = sender.on_feedback(TransportCc(1, 2, 0, 0, 1, ((0, 500),)), now=1.0)
    assert a[0].seq == 65535 and b[0].seq == 65536 and b[0].probe_cluster == 7
    assert a[0].arrival_time is not None and b[0].arrival_time is not None
    assert b[0].arrival_time - a[0].arrival_time == pytest.approx(0.064 + 0.00025)


def test_next_seq_wraps() -> None:
    sender = TwccSender(65535)
    assert [sender.next_seq() for _ in range(3)] == [65535, 0, 1]


def test_feedback_names_a_received_ssrc_as_media_source() -> None:
    # libwebrtc's RTCPReceiver::HandleTransportFeedback ignores feedback whose media SSRC is not one of
    # its streams: with media SSRC 0 Chrome never saw our feedback and its estimate sank to ~85 kbps.
    recorder = TwccRecorder(1, 0)
    recorder.record(0, now=1.0, ssrc=0x1234)
    recorder.record(1, now=1.001, ssrc=0xABCDEF01)
    (data,) = recorder.build_feedback(now=1.1)
    fb = TransportCc.parse(data)
    assert (fb.sender_ssrc, fb.media_ssrc) == (1, 0xABCDEF01)
    recorder.record(2, now=1.2, ssrc=0x1234)
    assert TransportCc.parse(recorder.build_feedback(now=1.3)[0]).media_ssrc == 0x1234
