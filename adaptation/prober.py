"""Bandwidth probing: when to probe, how a cluster looks, and what its feedback says.

Planning follows DESIGN.md section 4 (probe the next step at 1.2 x the missing rate, at least 200 kbps above
what is sent; back off x1.5 after a failure). The cluster shape and the result rules follow libwebrtc's
`bitrate_prober.cc` and `probe_bitrate_estimator.cc`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from adaptation.types import PacketResult


@dataclass(frozen=True, slots=True)
class ProberConfig:
    overshoot: float = 1.2  # probe 1.2 x the missing rate (DESIGN 4; LiveKit ProbeOveragePct 120)
    min_step_bps: float = 200_000.0  # at least 200 kbps above current (DESIGN 4; LiveKit ProbeMinBps)
    min_packets: int = 5  # libwebrtc min_probe_packets_sent
    min_duration_s: float = 0.015  # libwebrtc min_probe_duration
    min_spacing_s: float = 0.002  # libwebrtc min_probe_delta
    max_packet_size: int = 1200
    min_acked_fraction: float = 0.8  # of packets and of bytes (libwebrtc kMinReceivedProbesRatio)
    max_receive_send_ratio: float = 2.0  # libwebrtc kMaxValidRatio
    saturation_ratio: float = 0.9  # receive < 0.9 x send: the link, not the prober, set the pace
    max_interval_s: float = 1.0  # send and receive spans must lie in (0, 1 s] (libwebrtc)
    result_timeout_s: float = 1.0  # libwebrtc kMaxWaitingTimeForProbingResult
    # DESIGN 4 backs off x1.5 from 3 s up to 60 s after a failed probe. A probe short of its goal did no
    # harm, and with a 60 s cap a capacity rise goes unseen far longer than the 5 s up-switch and
    # fallback-exit targets allow (measured: docs/adaptation/README-section.md), so the cap is 4 s.
    # What does harm is a probe that succeeded and whose up-switch then met congestion (it measured a
    # FIFO share, or a layer at the top of its range): from then on that goal must be proved with a
    # margin, +10 % per such event up to +30 %, until an up-switch holds.
    backoff_base_s: float = 3.0  # DESIGN 4; LiveKit ProbeRegulator base interval
    backoff_factor: float = 1.5  # DESIGN 4
    backoff_max_s: float = 4.0
    misled_margin_step: float = 0.10
    misled_margin_max: float = 0.30
    after_success_s: float = 0.5  # pause between a successful probe and the next one (further probing)
    smaller_goal: float = 0.8  # a goal under 0.8 x the last failed one is not held back by its back-off
    # Proving that the video already chosen still fits (its lowest layer is short of the estimate) may
    # be retried this soon: it is small, and waiting longer turns a short dip into a pause.
    urgent_retry_s: float = 0.5


@dataclass(frozen=True, slots=True)
class ProbeCluster:
    """What the pacer must send: `min_packets` packets and `min_bytes` bytes at `target_bps`."""

    cluster_id: int
    target_bps: float
    goal_bps: float  # the rate the probe must prove to count as a success
    min_packets: int
    min_bytes: int
    packet_size: int  # padding size to use when no media is waiting
    spacing_s: float
    created_at: float

    @property
    def duration_s(self) -> float:
        return self.min_bytes * 8.0 / self.target_bps


class ProbeFailure(str, enum.Enum):
    TOO_FEW_ACKNOWLEDGED = "too_few_acknowledged"
    INVALID_TIMING = "invalid_timing"
    IMPLAUSIBLE_RATIO = "implausible_ratio"
    BELOW_GOAL = "below_goal"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    cluster_id: int
    target_bps: float
    goal_bps: float
    bps: float | None  # the measured rate, None when the measurement is invalid
    send_bps: float | None
    receive_bps: float | None
    link_limited: bool  # the receiver got it slower than we sent it: `bps` is the path's rate
    failure: ProbeFailure | None

    @property
    def succeeded(self) -> bool:
        return self.failure is None


class _Tally:
    __slots__ = (
        "acked",
        "acked_bytes",
        "cluster",
        "done",
        "first_recv",
        "first_recv_size",
        "first_send",
        "last_recv",
        "last_send",
        "last_send_size",
        "reported",
        "sent_bytes",
        "sent_packets",
    )

    def __init__(self, cluster: ProbeCluster) -> None:
        self.cluster = cluster
        self.sent_packets = 0
        self.sent_bytes = 0
        self.done = False
        self.reported = 0
        self.acked = 0
        self.acked_bytes = 0
        self.first_send = math.inf
        self.last_send = -math.inf
        self.first_recv = math.inf
        self.last_recv = -math.inf
        self.last_send_size = 0
        self.first_recv_size = 0


class Prober:
    """Plans one probe cluster at a time and turns its feedback into a `ProbeResult`."""

    __slots__ = (
        "_cfg",
        "_failed_goal",
        "_finished_at",
        "_interval",
        "_margin",
        "_next_id",
        "_not_before",
        "_sent_at",
        "_tally",
    )

    def __init__(self, config: ProberConfig = ProberConfig()) -> None:
        self._cfg = config
        self._next_id = 1
        self._tally: _Tally | None = None
        self._interval = config.backoff_base_s
        self._not_before = -math.inf
        self._sent_at = -math.inf
        self._failed_goal = math.inf
        self._finished_at = -math.inf
        self._margin = 0.0

    @property
    def in_flight(self) -> bool:
        return self._tally is not None

    @property
    def next_probe_at(self) -> float:
        return self._not_before

    def plan(
        self, goal_bps: float, current_bps: float, *, now: float, urgent: bool = False
    ) -> ProbeCluster | None:
        """A cluster proving `goal_bps` while `current_bps` is sent, or None (one in flight, backing off).

        `urgent` marks a probe that would keep video going (see `ProberConfig.urgent_retry_s`).
        """
        cfg = self._cfg
        if self._tally is not None:
            return None
        goal_bps *= 1.0 + self._margin
        # The back-off is for asking the same again: a clearly smaller goal (say, the lowest layer after
        # failing to prove the next one up) may be probed at once.
        waiting = now < self._not_before and goal_bps > cfg.smaller_goal * self._failed_goal
        if waiting and not (urgent and now >= self._finished_at + cfg.urgent_retry_s):
            return None
        target = current_bps + max(cfg.overshoot * (goal_bps - current_bps), cfg.min_step_bps)
        min_bytes = math.ceil(target * cfg.min_duration_s / 8.0)
        # Spread min_bytes over at least min_packets packets, at least min_spacing apart.
        packets = max(cfg.min_packets, math.ceil(min_bytes / cfg.max_packet_size))
        packet_size = max(1, min(cfg.max_packet_size, math.ceil(min_bytes / packets)))
        spacing = max(cfg.min_spacing_s, packet_size * 8.0 / target)
        packet_size = max(packet_size, math.ceil(target * spacing / 8.0))
        cluster = ProbeCluster(
            cluster_id=self._next_id,
            target_bps=target,
            goal_bps=goal_bps,
            min_packets=packets,
            min_bytes=max(min_bytes, packets * packet_size),
            packet_size=packet_size,
            spacing_s=spacing,
            created_at=now,
        )
        self._next_id += 1
        self._tally = _Tally(cluster)
        return cluster

    def on_misled(self, *, now: float) -> None:
        """An up-switch that a probe allowed met congestion soon after: demand a margin from now on."""
        cfg = self._cfg
        self._margin = min(self._margin + cfg.misled_margin_step, cfg.misled_margin_max)
        self._not_before = max(self._not_before, now + self._interval)
        self._interval = min(self._interval * cfg.backoff_factor, cfg.backoff_max_s)

    def on_up_switch_held(self) -> None:
        """An up-switch has lasted: probes are trusted again."""
        self._margin = 0.0

    def on_probe_sent(self, cluster_id: int, size: int, *, now: float) -> None:
        """The pacer sent one packet of the cluster (media or padding)."""
        t = self._tally
        if t is None or t.cluster.cluster_id != cluster_id:
            return
        t.sent_packets += 1
        t.sent_bytes += size
        self._sent_at = now
        c = t.cluster
        if t.sent_packets >= c.min_packets and t.sent_bytes >= c.min_bytes:
            t.done = True

    def on_packet_results(self, results: Sequence[PacketResult], *, now: float) -> ProbeResult | None:
        """Look at one feedback report; returns the cluster's result once all its packets are reported."""
        t = self._tally
        if t is None:
            return None
        cid = t.cluster.cluster_id
        for r in results:
            if r.probe_cluster != cid:
                continue
            t.reported += 1
            at = r.arrival_time
            if at is None:
                continue
            t.acked += 1
            t.acked_bytes += r.size
            st = r.send_time
            t.first_send = min(t.first_send, st)
            if st >= t.last_send:
                t.last_send = st
                t.last_send_size = r.size
            if at < t.first_recv:
                t.first_recv = at
                t.first_recv_size = r.size
            t.last_recv = max(t.last_recv, at)
        if t.done and t.reported >= t.sent_packets:
            return self._finish(now)
        return self.on_timer(now=now)

    def on_timer(self, *, now: float) -> ProbeResult | None:
        """Gives up on a cluster whose feedback has not come back in time."""
        t = self._tally
        if t is None:
            return None
        start = max(self._sent_at, t.cluster.created_at)
        if now - start > self._cfg.result_timeout_s:
            return self._finish(now, timed_out=True)
        return None

    def _finish(self, now: float, *, timed_out: bool = False) -> ProbeResult:
        t = self._tally
        assert t is not None
        self._tally = None
        self._finished_at = now
        result = self._measure(t, timed_out)
        if result.succeeded:
            self._interval = self._cfg.backoff_base_s
            self._not_before = now + self._cfg.after_success_s
            self._failed_goal = math.inf
        else:
            self._failed_goal = t.cluster.goal_bps
            self._not_before = now + self._interval
            self._interval = min(self._interval * self._cfg.backoff_factor, self._cfg.backoff_max_s)
        return result

    def _measure(self, t: _Tally, timed_out: bool) -> ProbeResult:
        cfg = self._cfg
        c = t.cluster

        def failed(reason: ProbeFailure, send: float | None = None, recv: float | None = None) -> ProbeResult:
            return ProbeResult(c.cluster_id, c.target_bps, c.goal_bps, None, send, recv, False, reason)

        sent = max(t.sent_packets, 1)
        if t.acked < cfg.min_acked_fraction * sent or t.acked_bytes < cfg.min_acked_fraction * t.sent_bytes:
            return failed(ProbeFailure.TIMED_OUT if timed_out else ProbeFailure.TOO_FEW_ACKNOWLEDGED)
        send_span = t.last_send - t.first_send
        recv_span = t.last_recv - t.first_recv
        if not (0.0 < send_span <= cfg.max_interval_s and 0.0 < recv_span <= cfg.max_interval_s):
            return failed(ProbeFailure.INVALID_TIMING)
        send_bps = (t.acked_bytes - t.last_send_size) * 8.0 / send_span
        recv_bps = (t.acked_bytes - t.first_recv_size) * 8.0 / recv_span
        if recv_bps > cfg.max_receive_send_ratio * send_bps:
            return failed(ProbeFailure.IMPLAUSIBLE_RATIO, send_bps, recv_bps)
        bps = min(send_bps, recv_bps)
        link_limited = recv_bps < cfg.saturation_ratio * send_bps
        failure = None if bps >= c.goal_bps else ProbeFailure.BELOW_GOAL
        return ProbeResult(
            c.cluster_id, c.target_bps, c.goal_bps, bps, send_bps, recv_bps, link_limited, failure
        )
