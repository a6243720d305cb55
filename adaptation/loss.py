"""Loss-based controller (draft-ietf-rmcat-gcc-02 section 6; libwebrtc send_side_bandwidth_estimation v1)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LossConfig:
    low_loss: float = 0.02  # below: grow (draft section 6)
    high_loss: float = 0.10  # above: cut by (1 - 0.5 * loss) (draft section 6)
    increase_factor: float = 1.08  # x the minimum target of the last second, + 1 kbps (libwebrtc v1)
    increase_add_bps: float = 1_000.0
    history_s: float = 1.0
    min_packets: int = 20  # judge loss over at least this many packets
    decrease_interval_s: float = 0.300  # at most one cut per 300 ms + RTT (libwebrtc kBweDecreaseInterval)
    min_bps: float = 30_000.0
    max_bps: float = 30_000_000.0


class LossBasedEstimator:
    """Tracks the loss fraction of recent feedback and derives a loss-limited rate."""

    __slots__ = ("_cfg", "_history", "_last_decrease", "_lost", "_received", "bps", "loss_fraction")

    def __init__(self, config: LossConfig = LossConfig(), *, start_bps: float = 300_000.0) -> None:
        self._cfg = config
        self.bps = start_bps
        self.loss_fraction = 0.0
        self._received = 0
        self._lost = 0
        self._history: deque[tuple[float, float]] = deque()
        self._last_decrease: float | None = None

    def on_feedback(self, received: int, lost: int, target_bps: float, rtt_s: float, *, now: float) -> float:
        """Account one feedback report; `target_bps` is the combined target currently in force."""
        cfg = self._cfg
        history = self._history
        history.append((now, target_bps))
        while history and history[0][0] < now - cfg.history_s:
            history.popleft()
        self._received += received
        self._lost += lost
        total = self._received + self._lost
        if total < cfg.min_packets:
            return self.bps
        loss = self._lost / total
        self._received = self._lost = 0
        self.loss_fraction = loss
        if loss < cfg.low_loss:
            self.bps = min(b for _, b in history) * cfg.increase_factor + cfg.increase_add_bps
        elif loss > cfg.high_loss and (
            self._last_decrease is None or now - self._last_decrease >= cfg.decrease_interval_s + rtt_s
        ):
            self.bps = min(self.bps, target_bps) * (1.0 - 0.5 * loss)
            self._last_decrease = now
        self.bps = min(max(self.bps, cfg.min_bps), cfg.max_bps)
        return self.bps

    def on_probe(self, bps: float, *, now: float) -> None:
        """A probe proved `bps`: start growing from there unless loss says otherwise."""
        if self.loss_fraction <= self._cfg.high_loss and bps > self.bps:
            self.bps = min(bps, self._cfg.max_bps)
            self._history.clear()
            self._history.append((now, self.bps))
