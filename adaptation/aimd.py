"""AIMD rate control driven by the over-use detector (libwebrtc aimd_rate_control.cc shape)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from adaptation.trendline import BandwidthUsage


@dataclass(frozen=True, slots=True)
class AimdConfig:
    min_bps: float = (
        30_000.0  # mediasoup/Jitsi floor; libwebrtc allows 5 kbps but no video layer fits that low
    )
    max_bps: float = 30_000_000.0  # libwebrtc kDefaultMaxBitrate
    start_bps: float = 300_000.0  # libwebrtc api/transport/bitrate_settings.h default start
    beta: float = 0.85  # draft-ietf-rmcat-gcc-02 section 5.5; libwebrtc kDefaultBackoffFactor
    backoff_subtract_bps: float = 5_000.0  # libwebrtc subtracts 5 kbps after the back-off
    increase_per_s: float = 1.08  # multiplicative increase 8 %/s (draft section 5.5)
    min_additive_bps_per_s: float = 4_000.0  # libwebrtc near-max increase floor
    throughput_cap_factor: float = 1.5  # never raise above 1.5 x acknowledged + 10 kbps
    throughput_cap_add_bps: float = 10_000.0
    min_rtt_s: float = 0.010  # RTT clamp for the one-decrease-per-RTT rule
    max_rtt_s: float = 0.200


class RateControlState(enum.Enum):
    HOLD = 0
    INCREASE = 1
    DECREASE = 2


class LinkCapacity:
    """EWMA of the throughput seen at over-use, with a deviation band (libwebrtc link_capacity_estimator)."""

    __slots__ = ("_var", "estimate")

    def __init__(self) -> None:
        self.estimate: float | None = None  # kbps, as in libwebrtc, so the variance constants carry over
        self._var = 0.4

    def reset(self) -> None:
        self.estimate = None

    def upper_bps(self) -> float:
        if self.estimate is None:
            return math.inf
        return (self.estimate + 3.0 * math.sqrt(self.estimate * self._var)) * 1000.0

    def lower_bps(self) -> float:
        if self.estimate is None:
            return 0.0
        return max(0.0, self.estimate - 3.0 * math.sqrt(self.estimate * self._var)) * 1000.0

    def on_overuse(self, throughput_bps: float) -> None:
        self._update(throughput_bps, 0.05)

    def on_probe(self, probe_bps: float) -> None:
        self._update(probe_bps, 0.5)

    def _update(self, sample_bps: float, alpha: float) -> None:
        sample = sample_bps / 1000.0
        if self.estimate is None:
            self.estimate = sample
        else:
            self.estimate = (1.0 - alpha) * self.estimate + alpha * sample
        norm = max(self.estimate, 1.0)
        error = self.estimate - sample
        self._var = (1.0 - alpha) * self._var + alpha * error * error / norm
        self._var = min(max(self._var, 0.4), 2.5)


class AimdRateControl:
    """Additive/multiplicative increase, multiplicative decrease of the delay-based target."""

    __slots__ = ("_cfg", "_initialised", "_last_change", "_last_decrease", "bps", "link", "state")

    def __init__(self, config: AimdConfig = AimdConfig()) -> None:
        self._cfg = config
        self.bps = config.start_bps
        self.state = RateControlState.HOLD
        self._last_change: float | None = None
        self._last_decrease: float | None = None
        self.link = LinkCapacity()
        self._initialised = False

    def set_estimate(self, bps: float, *, now: float) -> None:
        """Jump to a measured rate (a probe result)."""
        self.bps = min(max(bps, self._cfg.min_bps), self._cfg.max_bps)
        self._initialised = True
        self._last_change = now

    def update(self, usage: BandwidthUsage, acked_bps: float | None, rtt_s: float, *, now: float) -> float:
        """Apply one detector verdict; returns the new target."""
        cfg = self._cfg
        if usage is BandwidthUsage.OVERUSING:
            # At most one decrease per RTT unless the throughput has collapsed below half the target.
            rtt = min(max(rtt_s, cfg.min_rtt_s), cfg.max_rtt_s)
            if (
                self._last_decrease is not None
                and now - self._last_decrease < rtt
                and (acked_bps is None or acked_bps >= 0.5 * self.bps)
            ):
                return self.bps
            self.state = RateControlState.DECREASE
        elif usage is BandwidthUsage.UNDERUSING:
            self.state = RateControlState.HOLD
        elif self.state is RateControlState.HOLD:
            self.state = RateControlState.INCREASE
            self._last_change = now

        if self.state is RateControlState.INCREASE:
            self._increase(acked_bps, rtt_s, now)
        elif self.state is RateControlState.DECREASE:
            self._decrease(acked_bps, now)
        else:
            self._last_change = now
        return self.bps

    def _increase(self, acked_bps: float | None, rtt_s: float, now: float) -> None:
        cfg = self._cfg
        if acked_bps is not None and acked_bps > self.link.upper_bps():
            self.link.reset()
        last = self._last_change if self._last_change is not None else now
        dt = min(now - last, 1.0)
        limit = math.inf
        if acked_bps is not None:
            limit = cfg.throughput_cap_factor * acked_bps + cfg.throughput_cap_add_bps
        if self.bps < limit:
            if self.link.estimate is not None:
                increased = self.bps + self._additive_bps_per_s(rtt_s) * dt
            else:
                increased = self.bps + max(self.bps * (cfg.increase_per_s**dt - 1.0), 1000.0 * dt)
            self.bps = min(increased, limit, cfg.max_bps)
        self._last_change = now

    def _additive_bps_per_s(self, rtt_s: float) -> float:
        # One average-sized packet per response time, assuming 30 fps and 1200-byte packets (libwebrtc).
        frame_bits = self.bps / 30.0
        packets_per_frame = math.ceil(frame_bits / (1200 * 8))
        avg_packet_bits = frame_bits / packets_per_frame
        response_s = rtt_s + 0.100
        return max(self._cfg.min_additive_bps_per_s, avg_packet_bits / response_s)

    def _decrease(self, acked_bps: float | None, now: float) -> None:
        cfg = self._cfg
        if acked_bps is not None:
            decreased = acked_bps * cfg.beta
            if decreased > cfg.backoff_subtract_bps:
                decreased -= cfg.backoff_subtract_bps
            if decreased > self.bps and self.link.estimate is not None:
                decreased = cfg.beta * self.link.estimate * 1000.0
            if decreased < self.bps:
                self.bps = max(decreased, cfg.min_bps)
            if acked_bps < self.link.lower_bps():
                self.link.reset()
            self.link.on_overuse(acked_bps)
        self._initialised = True
        self.state = RateControlState.HOLD  # stay on hold until the queue has drained
        self._last_change = now
        self._last_decrease = now
