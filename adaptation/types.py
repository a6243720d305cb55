"""Value types shared between the adaptation core and the media plane that feeds it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(slots=True)
class PacketResult:
    """The fate of one sent packet, as learnt from transport-wide feedback.

    `seq` is the unwrapped transport-wide sequence number; times are seconds on the sender's monotonic
    clock (send_time) and the receiver's clock (arrival_time, None when reported lost).

    Treat it as a value (nothing mutates one). It is not frozen because the media plane builds one per
    packet it sends to every subscriber, and a frozen dataclass's `__init__` costs about four times as much.
    """

    seq: int
    send_time: float
    size: int  # bytes on the wire, headers included
    arrival_time: float | None
    probe_cluster: int | None = None

    @property
    def received(self) -> bool:
        return self.arrival_time is not None


class CongestionState(str, enum.Enum):
    """What the estimator currently believes about the path."""

    NORMAL = "normal"
    EARLY_WARNING = "early_warning"  # queue building (delay trend rising) or moderate loss (2-10 %)
    CONGESTED = "congested"  # over-use detected, or loss above 10 %
