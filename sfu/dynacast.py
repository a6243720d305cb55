"""Dynacast: which simulcast layers a publisher should encode, from what its subscribers want.

DESIGN.md section 4 (after LiveKit's dynacast, `dynacast_pause_delay`): a layer no subscriber wants is
paused at the publisher once it has been unwanted for 5 s while flowing; a layer wanted again is resumed
at once. The lowest layer is never paused, so a new subscriber always has a picture to start from.
Audio is never gated. Sans-I/O: `update` takes the wanted top layer and `now` and returns a decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# DESIGN.md section 4; LiveKit's dynacast debounces downgrades by 5 s.
PAUSE_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class LayersChanged:
    """The publisher should encode exactly the layers marked active; `resumed` lists those turned back on."""

    active: tuple[bool, ...]
    resumed: tuple[int, ...]


class LayerGate:
    """Per simulcast producer: the active layers and since when each unwanted one has been unwanted."""

    __slots__ = ("_delay", "_unwanted_since", "active")

    def __init__(self, layers: int, *, delay: float = PAUSE_DELAY) -> None:
        self._delay = delay
        self.active: tuple[bool, ...] = (True,) * layers
        self._unwanted_since: list[float | None] = [None] * layers

    def update(self, wanted_top: int | None, flowing: Sequence[bool], *, now: float) -> LayersChanged | None:
        """`wanted_top`: the highest layer any subscriber wants (None: nobody wants video). `flowing`: per
        layer, whether the publisher sends it now. Returns a change, or None when nothing changes."""
        top = 0 if wanted_top is None else max(0, wanted_top)
        active = list(self.active)
        resumed: list[int] = []
        for i in range(len(active)):
            if i <= top:
                self._unwanted_since[i] = None
                if not active[i]:
                    active[i] = True
                    resumed.append(i)
                continue
            if not active[i]:
                continue
            if not flowing[i]:
                self._unwanted_since[i] = None  # a layer the encoder is not sending costs it nothing yet
                continue
            since = self._unwanted_since[i]
            if since is None:
                self._unwanted_since[i] = now
            elif now - since >= self._delay:
                active[i] = False
                self._unwanted_since[i] = None
        new = tuple(active)
        if new == self.active:
            return None
        self.active = new
        return LayersChanged(new, tuple(resumed))
