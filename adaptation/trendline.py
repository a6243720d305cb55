"""Trendline delay-gradient filter with its adaptive-threshold over-use detector (GCC, libwebrtc shape).

Works in milliseconds internally because every constant below is stated in milliseconds at its source.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class BandwidthUsage(enum.Enum):
    NORMAL = 0
    UNDERUSING = 1
    OVERUSING = 2


@dataclass(frozen=True, slots=True)
class TrendlineConfig:
    window_size: int = 20  # packet groups; libwebrtc kDefaultTrendlineWindowSize
    smoothing: float = 0.9  # EWMA of accumulated delay; libwebrtc kDefaultTrendlineSmoothingCoeff
    threshold_gain: float = 4.0  # libwebrtc kDefaultTrendlineThresholdGain
    max_deltas: int = 60  # modified trend = min(num_deltas, 60) * slope * gain; libwebrtc kMinNumDeltas
    initial_threshold_ms: float = 12.5  # draft-ietf-rmcat-gcc-02 section 5.4; libwebrtc
    k_up: float = 0.0087  # libwebrtc trendline_estimator.cc (draft uses 0.01)
    k_down: float = 0.039  # libwebrtc trendline_estimator.cc (draft uses 0.00018)
    min_threshold_ms: float = 6.0
    max_threshold_ms: float = 600.0
    max_adapt_offset_ms: float = 15.0  # skip adaptation on spikes this far above the threshold
    max_time_step_ms: float = 100.0
    overusing_time_threshold_ms: float = 10.0  # draft section 5.4 overuse_time_th


# The least-squares sums are kept incrementally; rebuilding them from the window every so often keeps
# rounding drift bounded and lets the x origin move forward so x * x stays small.
_REBUILD_EVERY = 512


class Trendline:
    """Least-squares slope of smoothed accumulated delay over a window of groups, plus the detector."""

    __slots__ = (
        "_accumulated",
        "_cfg",
        "_first_arrival_ms",
        "_last_threshold_update_ms",
        "_num_deltas",
        "_overuse_counter",
        "_prev_modified",
        "_prev_trend",
        "_since_rebuild",
        "_smoothed",
        "_sx",
        "_sxx",
        "_sxy",
        "_sy",
        "_threshold",
        "_time_over_using",
        "_x0",
        "_xs",
        "_ys",
        "modified_trend",
        "usage",
    )

    def __init__(self, config: TrendlineConfig = TrendlineConfig()) -> None:
        self._cfg = config
        self._xs: deque[float] = deque()
        self._ys: deque[float] = deque()
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._x0 = 0.0
        self._since_rebuild = 0
        self._num_deltas = 0
        self._first_arrival_ms: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._prev_trend = 0.0
        self._prev_modified = 0.0
        self._threshold = config.initial_threshold_ms
        self._last_threshold_update_ms: float | None = None
        self._time_over_using = -1.0
        self._overuse_counter = 0
        self.usage = BandwidthUsage.NORMAL
        self.modified_trend = 0.0

    @property
    def threshold_ms(self) -> float:
        return self._threshold

    def update(self, recv_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> BandwidthUsage:
        """Feed one inter-group delta; returns the detector's hypothesis."""
        # Runs once per packet group of every subscriber: state is read into locals and written back once.
        cfg = self._cfg
        delta_ms = recv_delta_ms - send_delta_ms
        num_deltas = self._num_deltas
        if num_deltas < 1000:
            num_deltas += 1
            self._num_deltas = num_deltas
        first = self._first_arrival_ms
        if first is None:
            first = self._first_arrival_ms = arrival_ms
        accumulated = self._accumulated + delta_ms
        self._accumulated = accumulated
        smoothing = cfg.smoothing
        y = self._smoothed = smoothing * self._smoothed + (1.0 - smoothing) * accumulated

        x = arrival_ms - first - self._x0
        xs, ys = self._xs, self._ys
        xs.append(x)
        ys.append(y)
        sx = self._sx + x
        sy = self._sy + y
        sxx = self._sxx + x * x
        sxy = self._sxy + x * y
        window = cfg.window_size
        n = len(xs)
        if n > window:
            ox = xs.popleft()
            oy = ys.popleft()
            sx -= ox
            sy -= oy
            sxx -= ox * ox
            sxy -= ox * oy
            n -= 1
        self._sx, self._sy, self._sxx, self._sxy = sx, sy, sxx, sxy
        self._since_rebuild += 1
        if self._since_rebuild >= _REBUILD_EVERY:
            self._rebuild()
            sx, sy, sxx, sxy = self._sx, self._sy, self._sxx, self._sxy

        trend = self._prev_trend
        if n == window:
            den = n * sxx - sx * sx
            if den > 1e-9:
                trend = (n * sxy - sx * sy) / den
        if num_deltas < 2:
            self.usage = BandwidthUsage.NORMAL
            return BandwidthUsage.NORMAL
        self._detect(trend, num_deltas, send_delta_ms, arrival_ms)
        return self.usage

    def _rebuild(self) -> None:
        shift = self._xs[0]
        self._x0 += shift
        xs = deque(x - shift for x in self._xs)
        self._xs = xs
        ys = self._ys
        self._sx = sum(xs)
        self._sy = sum(ys)
        self._sxx = sum(x * x for x in xs)
        self._sxy = sum(x * y for x, y in zip(xs, ys))
        self._since_rebuild = 0

    def _detect(self, trend: float, num_deltas: int, ts_delta_ms: float, now_ms: float) -> None:
        cfg = self._cfg
        modified = min(num_deltas, cfg.max_deltas) * trend * cfg.threshold_gain
        self._prev_modified = modified
        self.modified_trend = modified
        threshold = self._threshold
        if modified > threshold:
            if self._time_over_using == -1.0:
                # Assume the over-use started half-way between the last two groups.
                self._time_over_using = ts_delta_ms / 2.0
            else:
                self._time_over_using += ts_delta_ms
            self._overuse_counter += 1
            if (
                self._time_over_using > cfg.overusing_time_threshold_ms
                and self._overuse_counter > 1
                and trend >= self._prev_trend
            ):
                self._time_over_using = 0.0
                self._overuse_counter = 0
                self.usage = BandwidthUsage.OVERUSING
        else:
            self._time_over_using = -1.0
            self._overuse_counter = 0
            self.usage = BandwidthUsage.UNDERUSING if modified < -threshold else BandwidthUsage.NORMAL
        self._prev_trend = trend

        # The adaptive threshold (draft-ietf-rmcat-gcc-02 section 5.4).
        last = self._last_threshold_update_ms
        if last is None:
            last = now_ms
        self._last_threshold_update_ms = now_ms
        abs_m = abs(modified)
        if abs_m > threshold + cfg.max_adapt_offset_ms:
            return  # a sudden spike (e.g. a route change) should not drag the threshold along
        k = cfg.k_down if abs_m < threshold else cfg.k_up
        dt = min(now_ms - last, cfg.max_time_step_ms)
        threshold += k * (abs_m - threshold) * dt
        if threshold < cfg.min_threshold_ms:
            threshold = cfg.min_threshold_ms
        elif threshold > cfg.max_threshold_ms:
            threshold = cfg.max_threshold_ms
        self._threshold = threshold
