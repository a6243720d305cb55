"""The issue's metrics, computed from a run's 100 ms samples, events and per-packet records."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

from adaptation.events import AudioOnlyEntered, VideoResumed
from adaptation.fallback import FallbackState
from adaptation.sim.media import AUDIO_BPS, AUDIO_INTERVAL_S, NOMINAL_LAYER_BPS
from adaptation.sim.run import FlowTrace, RunResult, Sample

SETTLE_S = 5.0  # samples this soon after a capacity change are not judged for layer optimality
FIT_SHARE = 0.9  # the optimal layer is the highest whose bitrate + audio fits in 90 % of capacity
BAND = (0.8, 1.1)  # the estimate is "in band" within 80-110 % of capacity
PAUSE_WINDOW_S = 30.0
FAIRNESS_WINDOW_S = 20.0  # RFC 8868 section 3: throughput ratios over 1, 5 and 20 s windows


def optimal_layer(capacity_bps: float) -> int | None:
    """The highest layer whose nominal bitrate plus audio fits in 90 % of `capacity_bps` (None: audio only)."""
    best = None
    for i, bps in enumerate(NOMINAL_LAYER_BPS):
        if bps + AUDIO_BPS <= FIT_SHARE * capacity_bps + 1e-6:
            best = i
    return best


def _rank(layer: int | None) -> int:
    return -1 if layer is None else layer


def _changes(result: RunResult) -> list[float]:
    return [t for t, _ in result.profile.capacity_kbps]


def _first(samples: list[Sample], start: float, end: float, ok: Any) -> float | None:
    for s in samples:
        if s.t < start:
            continue
        if s.t >= end:
            break
        if ok(s):
            return s.t - start
    return None


def flow_metrics(result: RunResult, trace: FlowTrace) -> dict[str, Any]:
    samples = trace.samples
    changes = _changes(result)
    ends = changes[1:] + [result.profile.duration_s]

    judged = optimal = 0
    for s in samples:
        if any(c <= s.t < c + SETTLE_S for c in changes):
            continue
        judged += 1
        optimal += s.layer == optimal_layer(s.capacity_bps)

    down: list[float] = []
    up: list[float] = []
    enter: list[float] = []
    exit_: list[float] = []
    unresolved = 0  # events whose outcome never came before the next capacity step (the value is the step)
    for c, end in zip(changes[1:], ends[1:]):
        before = [s for s in samples if c - 0.5 <= s.t < c]
        if not before:
            continue
        last = before[-1]
        # capacity steps are judged against the fair share (one flow: the whole link)
        share = result.profile.capacity_at(c) / result.profile.flows
        sending = max(s.send_bps for s in before)
        if share < sending:
            took = _first(samples, c, end, lambda s: s.send_bps <= s.capacity_bps)
            down.append(took if took is not None else end - c)
            unresolved += took is None
        want = optimal_layer(share)
        if share > last.link_bps / result.profile.flows and _rank(want) > _rank(last.layer):
            took = _first(samples, c, end, lambda s: _rank(s.layer) >= _rank(optimal_layer(s.capacity_bps)))
            up.append(took if took is not None else end - c)
            unresolved += took is None
        if end - c < SETTLE_S:
            continue  # a dip shorter than that is not a fallback case
        if want is None and last.fallback is FallbackState.VIDEO:
            took = _first(samples, c, end, lambda s: s.fallback is not FallbackState.VIDEO)
            enter.append(took if took is not None else end - c)
            unresolved += took is None
        if want is not None and last.fallback is not FallbackState.VIDEO:
            took = _first(samples, c, end, lambda s: s.fallback is FallbackState.VIDEO)
            exit_.append(took if took is not None else end - c)
            unresolved += took is None

    pauses = [e.at for e in trace.events if isinstance(e, AudioOnlyEntered)]
    per_window = max((sum(1 for q in pauses if p <= q < p + PAUSE_WINDOW_S) for p in pauses), default=0)

    in_band = sum(
        1 for s in samples if BAND[0] * s.capacity_bps <= s.estimate_bps <= BAND[1] * s.capacity_bps
    )

    gaps = 0.0
    times = trace.audio_send_times
    for a, b in pairwise(times):
        if b - a > 3 * AUDIO_INTERVAL_S:
            gaps += b - a - AUDIO_INTERVAL_S

    return {
        "layer_optimal_fraction": optimal / judged if judged else None,
        "downswitch_reaction_s_max": max(down) if down else None,
        "upswitch_delay_s_max": max(up) if up else None,
        "audio_loss_fraction": trace.audio_lost / trace.audio_sent if trace.audio_sent else 0.0,
        "audio_paused_s": round(gaps, 3),
        "fallback_enter_s_max": max(enter) if enter else None,
        "fallback_exit_s_max": max(exit_) if exit_ else None,
        "unresolved_events": unresolved,
        "pauses": len(pauses),
        "pauses_per_30s_max": per_window,
        "resumes": sum(1 for e in trace.events if isinstance(e, VideoResumed)),
        "video_stalls": trace.stalls,
        "estimate_in_band_fraction": in_band / len(samples) if samples else None,
        "mean_send_kbps": trace.sent_bytes * 8.0 / result.profile.duration_s / 1000.0,
        "probes": trace.probes,
        "probes_succeeded": trace.probes_succeeded,
    }


def _worst(values: list[Any], pick: Any) -> Any:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def metrics(result: RunResult) -> dict[str, Any]:
    """One object: the worst value over the flows for each metric, then per-flow details."""
    per_flow = [flow_metrics(result, t) for t in result.flows]
    delays = sorted(result.queue_delays_s)
    p95 = delays[min(len(delays) - 1, math.ceil(0.95 * len(delays)) - 1)] * 1000.0 if delays else 0.0
    lowest_is_worst = {"layer_optimal_fraction", "estimate_in_band_fraction", "mean_send_kbps"}
    out: dict[str, Any] = {"profile": result.profile.name, "flows": result.profile.flows}
    for key in per_flow[0]:
        values = [m[key] for m in per_flow]
        out[key] = _worst(values, min if key in lowest_is_worst else max)
    out["queue_delay_p95_ms"] = p95
    if len(per_flow) > 1:
        rates = [m["mean_send_kbps"] for m in per_flow]
        out["fairness_ratio"] = max(rates) / min(rates) if min(rates) > 0 else math.inf
        out["fairness_ratio_20s_max"] = _fairness(result)
    out["per_flow"] = per_flow
    rounded: dict[str, Any] = _rounded(out)
    return rounded


def _fairness(result: RunResult) -> float:
    """The largest ratio between two flows' sending rates over any 20 s window (RFC 8868 section 3)."""
    worst = 1.0
    duration = result.profile.duration_s
    start = 0.0
    while start + FAIRNESS_WINDOW_S <= duration + 1e-9:
        rates = []
        for trace in result.flows:
            window = [s.send_bps for s in trace.samples if start <= s.t < start + FAIRNESS_WINDOW_S]
            rates.append(sum(window) / len(window) if window else 0.0)
        low, high = min(rates), max(rates)
        worst = max(worst, high / low if low > 0 else math.inf)
        start += FAIRNESS_WINDOW_S / 2
    return worst


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
