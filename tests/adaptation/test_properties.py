"""Hypothesis properties: the estimate stays within its bounds, audio is never paused or held back, and
allocations never exceed the estimate (save the lowest layer's bounded grace, which is marked)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adaptation.aimd import AimdConfig
from adaptation.allocator import Allocator, LayerState, VideoTrack
from adaptation.estimator import BandwidthEstimator
from adaptation.pacer import Pacer, PacketKind
from adaptation.types import PacketResult

packet = st.tuples(
    st.floats(0.0, 0.05),  # send gap
    st.integers(60, 1500),  # size
    st.one_of(st.none(), st.floats(0.0, 2.0)),  # one-way delay, None = lost
    st.booleans(),  # belongs to a probe cluster
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(packet, max_size=40), max_size=30), st.lists(st.floats(1e3, 1e9), max_size=3))
def test_estimate_never_negative_nor_above_its_cap(
    reports: list[list[tuple[float, int, float | None, bool]]], probes: list[float]
) -> None:
    cfg = AimdConfig()
    est = BandwidthEstimator()
    seq = 0
    t = 0.0
    for i, report in enumerate(reports):
        results = []
        for gap, size, delay, probe in report:
            t += gap
            results.append(
                PacketResult(seq, t, size, None if delay is None else t + delay, 1 if probe else None)
            )
            seq += 1
        est.on_packet_results(results, now=t + 2.5)
        if i < len(probes):
            est.on_probe_result(probes[i], link_limited=i % 2 == 0, now=t + 2.5)
        assert 0.0 < est.target_bps <= cfg.max_bps
        assert est.acked_bps is None or est.acked_bps >= 0.0


layers = st.lists(st.floats(10_000, 3_000_000), min_size=1, max_size=3).map(sorted)
track = st.tuples(layers, st.lists(st.booleans(), min_size=3, max_size=3), st.integers(0, 2))
step = st.tuples(
    st.floats(0.0, 5_000_000),  # estimate
    st.floats(0.0, 150_000),  # audio
    st.lists(track, min_size=1, max_size=3),
    st.booleans(),  # audio only
    st.booleans(),  # grace
    st.one_of(st.none(), st.floats(0.0, 5_000_000)),  # probe proved
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=25))
def test_allocations_never_exceed_the_estimate_and_audio_is_never_paused(
    steps: list[tuple[float, float, list[tuple[list[float], list[bool], int]], bool, bool, float | None]],
) -> None:
    alloc = Allocator()
    now = 0.0
    for estimate, audio, specs, audio_only, grace, proved in steps:
        now += 0.7
        tracks = [
            VideoTrack(
                f"t{i}",
                tuple(
                    LayerState(b, 0.0 if flowing else None)
                    for b, flowing in zip(bitrates, flags, strict=False)
                ),
                priority,
            )
            for i, (bitrates, flags, priority) in enumerate(specs)
        ]
        a = alloc.allocate(
            estimate, audio, tracks, now=now, probe_proved_bps=proved, audio_only=audio_only, grace=grace
        )
        assert a.audio_bps == audio  # reserved first, whatever the estimate
        granted = sum(t.bitrate_bps for t in a.tracks if not t.over_budget)
        assert granted <= max(0.0, estimate - audio) + 1e-6
        if audio_only:
            assert a.video_bps == 0.0
        for t, spec in zip(a.tracks, tracks, strict=True):
            if t.over_budget:
                assert grace and not audio_only
                assert t.layer == next(
                    i for i, layer in enumerate(spec.layers) if layer.flowing_since is not None
                )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 0.05), st.booleans(), st.integers(60, 1500)), max_size=60),
    st.floats(10_000, 5_000_000),
)
def test_audio_is_never_held_back_by_the_pacer(arrivals: list[tuple[float, bool, int]], rate: float) -> None:
    pacer: Pacer[int] = Pacer(rate_bps=rate)
    t = 0.0
    for gap, is_audio, size in arrivals:
        t += gap
        # let the pacer run until t
        while (wake := pacer.next_send_time(now=t)) is not None and wake <= t:
            if pacer.pop(now=t) is None:
                break
        pacer.enqueue(0, size, PacketKind.AUDIO if is_audio else PacketKind.VIDEO)
        if is_audio:
            assert pacer.next_send_time(now=t) == t
            release = pacer.pop(now=t)
            assert release is not None and release.kind is PacketKind.AUDIO
