"""Simulcast layer choice for one subscriber: a pin, the subscriber's rendered size and its bandwidth.

Pure functions, table-tested. Order of precedence: a pin wins (when its layer flows); otherwise the
layer is the highest flowing one that both the size preference and the bandwidth choice allow.
"""

from __future__ import annotations

from collections.abc import Sequence

# The JS SDK publishes q/h/f at scaleResolutionDownBy 4/2/1 of a 1280x720 capture (signalling/static/
# confidant.js, LAYERS); without a measured keyframe that is the best guess at each layer's size.
NOMINAL_TOP = (1280, 720)
SCALE_STEP = 2


def estimated_sizes(measured: Sequence[tuple[int, int] | None]) -> list[tuple[int, int]]:
    """Each layer's resolution: measured from its keyframes, else derived from the nearest measured layer
    by the scale-down order (x2 per layer), else from the nominal top layer."""
    n = len(measured)
    known = [i for i, s in enumerate(measured) if s is not None]
    out: list[tuple[int, int]] = []
    for i, size in enumerate(measured):
        if size is not None:
            out.append(size)
            continue
        if known:
            j = min(known, key=lambda k: abs(k - i))
            ref = measured[j]
            assert ref is not None
        else:
            j, ref = n - 1, NOMINAL_TOP
        factor = float(SCALE_STEP) ** (i - j)
        out.append((max(1, round(ref[0] * factor)), max(1, round(ref[1] * factor))))
    return out


def layer_for_size(measured: Sequence[tuple[int, int] | None], width: int, height: int) -> int:
    """The smallest layer whose resolution covers `width` x `height` (device pixels); the top layer when
    none does. A layer covers when it is at least as wide and as high as asked."""
    sizes = estimated_sizes(measured)
    for i, (w, h) in enumerate(sizes):
        if w >= width and h >= height:
            return i
    return len(sizes) - 1


def choose_layer(flowing: Sequence[int], *, pinned: int | None, preferred: int | None,
                 adapted: int | None) -> int | None:
    """The layer to forward among `flowing` (None when nothing flows).

    A flowing pin wins. Otherwise the cap is min(preference, bandwidth choice) and the result is the
    highest flowing layer under it, or the lowest flowing one when none is that low.
    """
    if not flowing:
        return None
    if pinned is not None and pinned in flowing:
        return pinned
    caps = [c for c in (preferred, adapted) if c is not None]
    if not caps:
        return max(flowing)
    cap = min(caps)
    return max((x for x in flowing if x <= cap), default=min(flowing))
