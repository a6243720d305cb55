"""Value types shared between the adaptation core and the media plane that feeds it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PacketResult:
    """The fate of one sent packet, as learnt from transport-wide feedback.

    `seq` is the unwrapped transport-wide sequence number; times are seconds on the sender's monotonic
    clock (send_time) and the receiver's clock (arrival_time, None when reported lost).
    """

    seq: int
    send_time: float
    size: int  # bytes on the wire, headers included
    arrival_time: float | None
    probe_cluster: int | None = None

    @property
    def received(self) -> bool:
        return self.arrival_time is not None
