"""Send-side bandwidth estimator: delay-based (GCC) and loss-based, combined as the minimum.

Fed with `PacketResult`s as they come out of transport-wide feedback, in the order of the report
(transport-wide sequence order), plus `now`. Sources: draft-ietf-rmcat-gcc-02 and libwebrtc m125
(`delay_based_bwe.cc`, `inter_arrival_delta.cc`, `send_side_bandwidth_estimation.cc`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from adaptation.aimd import AimdConfig, AimdRateControl
from adaptation.loss import LossBasedEstimator, LossConfig
from adaptation.trendline import BandwidthUsage, Trendline, TrendlineConfig
from adaptation.types import CongestionState, PacketResult


@dataclass(frozen=True, slots=True)
class EstimatorConfig:
    group_length_s: float = 0.005  # packets sent within 5 ms form one group (draft section 5.2)
    burst_delta_s: float = 0.005  # arrival gap under which a group is merged as a burst (libwebrtc)
    max_burst_s: float = 0.100  # libwebrtc kMaxBurstDuration
    acked_window_s: float = 0.25  # acknowledged-rate window (libwebrtc settles on 150 ms windows)
    rtt_smoothing: float = 0.875
    initial_rtt_s: float = 0.200  # libwebrtc default RTT before any sample
    early_warning_fraction: float = 0.5  # trend above this share of the threshold: queue is building
    # A probe cluster deliberately overfills the path for a few milliseconds; over-use seen on groups that
    # arrive within this long after a probe packet is its own queue draining, and does not cut the rate
    # (the probe result has already measured the path). LiveKit freezes its estimate likewise.
    probe_guard_s: float = 0.5
    aimd: AimdConfig = field(default_factory=AimdConfig)
    trendline: TrendlineConfig = field(default_factory=TrendlineConfig)
    loss: LossConfig = field(default_factory=LossConfig)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A snapshot of the estimator, for logs, metrics and the allocator."""

    target_bps: float
    delay_based_bps: float
    loss_based_bps: float
    acked_bps: float | None
    state: CongestionState
    loss_fraction: float
    rtt_s: float


class BandwidthEstimator:
    """One per subscriber transport. Call `on_packet_results` with each feedback report's results."""

    __slots__ = (
        "_acked",
        "_acked_bps",
        "_aimd",
        "_cfg",
        "_g_first_arrival",
        "_g_first_send",
        "_g_last_arrival",
        "_g_last_send",
        "_loss",
        "_p_arrival",
        "_p_send",
        "_probe_arrival",
        "_rtt",
        "_state",
        "_trendline",
    )

    def __init__(self, config: EstimatorConfig = EstimatorConfig()) -> None:
        self._cfg = config
        self._trendline = Trendline(config.trendline)
        self._aimd = AimdRateControl(config.aimd)
        self._loss = LossBasedEstimator(config.loss, start_bps=config.aimd.start_bps)
        self._rtt = config.initial_rtt_s
        # (first arrival, last arrival, bytes) per report, for the acknowledged rate
        self._acked: deque[tuple[float, float, int, int]] = deque()
        self._acked_bps: float | None = None
        self._state = CongestionState.NORMAL
        # the group being filled and the previous complete one (send and arrival times, seconds)
        self._g_first_send = -1.0
        self._g_last_send = -1.0
        self._g_first_arrival = -1.0
        self._g_last_arrival = -1.0
        self._p_send = -1.0
        self._p_arrival = -1.0
        self._probe_arrival = -1.0e9

    @property
    def target_bps(self) -> float:
        return min(self._aimd.bps, self._loss.bps)

    @property
    def state(self) -> CongestionState:
        return self._state

    @property
    def acked_bps(self) -> float | None:
        return self._acked_bps

    @property
    def rtt_s(self) -> float:
        return self._rtt

    def snapshot(self) -> Estimate:
        return Estimate(
            target_bps=self.target_bps,
            delay_based_bps=self._aimd.bps,
            loss_based_bps=self._loss.bps,
            acked_bps=self._acked_bps,
            state=self._state,
            loss_fraction=self._loss.loss_fraction,
            rtt_s=self._rtt,
        )

    def on_packet_results(self, results: Sequence[PacketResult], *, now: float) -> None:
        """Account one feedback report."""
        # Runs for every feedback of every subscriber: the loop touches only locals, and the running
        # maxima are plain comparisons (noqa PLR1730): max() calls made this loop a quarter slower.
        cfg = self._cfg
        group_len = cfg.group_length_s
        burst = cfg.burst_delta_s
        max_burst = cfg.max_burst_s
        probe_guard = cfg.probe_guard_s
        trend_update = self._trendline.update
        overusing = BandwidthUsage.OVERUSING
        g_first_send = self._g_first_send
        g_last_send = self._g_last_send
        g_first_arrival = self._g_first_arrival
        g_last_arrival = self._g_last_arrival
        p_send = self._p_send
        p_arrival = self._p_arrival
        received = lost = size_sum = 0
        first_arrival = last_arrival = -1.0
        max_send = -1.0
        overused = False
        guard_until = self._probe_arrival + probe_guard
        usage = None
        for r in results:
            at = r.arrival_time
            if at is None:
                lost += 1
                continue
            received += 1
            size_sum += r.size
            if r.probe_cluster is not None:
                guard_until = at + probe_guard
            st = r.send_time
            if st > max_send:  # noqa: PLR1730
                max_send = st
            if first_arrival < 0.0 or at < first_arrival:
                first_arrival = at
            if at > last_arrival:  # noqa: PLR1730
                last_arrival = at
            if g_first_send < 0.0:
                g_first_send = g_last_send = st
                g_first_arrival = g_last_arrival = at
                continue
            if st < g_first_send:
                continue  # sent before the current group: reordered, ignore for the delay signal
            if st - g_first_send > group_len:
                # A packet that arrives within 5 ms of the group's last one and ahead of schedule is part
                # of a burst the network delivered together (a queue draining), not a new group.
                arrival_gap = at - g_last_arrival
                in_burst = (
                    arrival_gap - (st - g_last_send) < 0.0
                    and arrival_gap <= burst
                    and at - g_first_arrival < max_burst
                )
                if not in_burst:
                    if p_send >= 0.0:
                        recv_delta = g_last_arrival - p_arrival
                        if recv_delta >= 0.0:
                            usage = trend_update(
                                recv_delta * 1000.0, (g_last_send - p_send) * 1000.0, at * 1000.0
                            )
                            if usage is overusing and at > guard_until:
                                overused = True
                    p_send = g_last_send
                    p_arrival = g_last_arrival
                    g_first_send = g_last_send = st
                    g_first_arrival = g_last_arrival = at
                    continue
            if st > g_last_send:  # noqa: PLR1730
                g_last_send = st
            if at > g_last_arrival:  # noqa: PLR1730
                g_last_arrival = at
        self._g_first_send = g_first_send
        self._g_last_send = g_last_send
        self._g_first_arrival = g_first_arrival
        self._g_last_arrival = g_last_arrival
        self._p_send = p_send
        self._p_arrival = p_arrival
        self._probe_arrival = guard_until - cfg.probe_guard_s

        if max_send >= 0.0:
            sample = now - max_send
            if sample > 0.0:
                a = cfg.rtt_smoothing
                self._rtt = a * self._rtt + (1.0 - a) * sample
        if received:
            self._update_acked(first_arrival, last_arrival, size_sum, received)

        if usage is not None:
            if usage is BandwidthUsage.OVERUSING and not overused:
                usage = BandwidthUsage.NORMAL  # only the probe's own queue: hold, do not cut
            self._aimd.update(
                BandwidthUsage.OVERUSING if overused else usage, self._acked_bps, self._rtt, now=now
            )
        if received or lost:
            self._loss.on_feedback(received, lost, self.target_bps, self._rtt, now=now)
        self._update_state(overused)

    def on_probe_result(self, bps: float, *, link_limited: bool, now: float) -> None:
        """Apply a probe measurement: a link-limited result is the path's rate; otherwise a lower bound."""
        aimd = self._aimd
        if link_limited or bps > aimd.bps:
            aimd.set_estimate(bps, now=now)
            aimd.link.on_probe(bps)
        self._loss.on_probe(bps, now=now)

    def _update_acked(self, first_arrival: float, last_arrival: float, size: int, count: int) -> None:
        window = self._cfg.acked_window_s
        acked = self._acked
        acked.append((first_arrival, last_arrival, size, count))
        while acked and acked[0][1] <= last_arrival - window:
            acked.popleft()
        span = last_arrival - acked[0][0]
        if span < 0.02:
            return  # too short to be a rate
        total = 0
        packets = 0
        for _, _, b, n in acked:
            total += b
            packets += n
        # n packets arrive over n - 1 gaps: count one packet fewer than arrived
        self._acked_bps = total * (packets - 1) / packets * 8.0 / span

    def _update_state(self, overused: bool) -> None:
        loss = self._loss.loss_fraction
        loss_cfg = self._cfg.loss
        tl = self._trendline
        if overused or tl.usage is BandwidthUsage.OVERUSING or loss > loss_cfg.high_loss:
            self._state = CongestionState.CONGESTED
        elif (
            tl.modified_trend > self._cfg.early_warning_fraction * tl.threshold_ms
            or loss >= loss_cfg.low_loss
        ):
            self._state = CongestionState.EARLY_WARNING
        else:
            self._state = CongestionState.NORMAL
