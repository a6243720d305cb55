"""Layer choice: the size a subscriber renders at, its bandwidth choice and a pin."""

from __future__ import annotations

import pytest

from sfu.layers import choose_layer, estimated_sizes, layer_for_size

Q, H, F = (320, 180), (640, 360), (1280, 720)


@pytest.mark.parametrize(
    ("measured", "expected"),
    [
        ([Q, H, F], [Q, H, F]),
        ([None, None, None], [Q, H, F]),  # nothing measured: the SDK's nominal 720p ladder
        ([None, (480, 270), None], [(240, 135), (480, 270), (960, 540)]),  # derived by the x2 order
        ([(160, 90), None, None], [(160, 90), (320, 180), (640, 360)]),
        ([None, None], [H, F]),
        ([None], [F]),
    ],
)
def test_estimated_sizes(measured: list[tuple[int, int] | None], expected: list[tuple[int, int]]) -> None:
    assert estimated_sizes(measured) == expected


@pytest.mark.parametrize(
    ("measured", "width", "height", "expected"),
    [
        ([Q, H, F], 320, 180, 0),
        ([Q, H, F], 160, 90, 0),
        ([Q, H, F], 321, 180, 1),
        ([Q, H, F], 405, 228, 1),  # a demo-page tile in a family room
        ([Q, H, F], 640, 361, 2),
        ([Q, H, F], 2560, 1440, 2),  # nothing covers: the top layer
        ([Q, H, F], 300, 400, 2),  # portrait tile of a landscape video (already scaled by the SDK)
        ([None, None, None], 405, 228, 1),
        ([(480, 270), None, None], 405, 228, 0),  # measured beats nominal
    ],
)
def test_layer_for_size(measured: list[tuple[int, int] | None], width: int, height: int, expected: int) -> None:
    assert layer_for_size(measured, width, height) == expected


# flowing layers x pin x size preference x bandwidth choice -> layer forwarded
@pytest.mark.parametrize(
    ("flowing", "pinned", "preferred", "adapted", "expected"),
    [
        ([0, 1, 2], None, None, None, 2),  # no opinion: the highest flowing
        ([0, 1, 2], None, 1, None, 1),  # preference caps
        ([0, 1, 2], None, None, 1, 1),  # bandwidth caps
        ([0, 1, 2], None, 1, 2, 1),  # min(preference, bandwidth)
        ([0, 1, 2], None, 2, 0, 0),
        ([0, 1, 2], None, 0, 0, 0),
        ([0, 1, 2], 2, 0, 0, 2),  # pin wins over both
        ([0, 1, 2], 0, 2, 2, 0),
        ([0, 1], 2, 1, None, 1),  # pinned layer not flowing: automatic choice
        ([1, 2], None, 0, None, 1),  # nothing that low flows: the lowest flowing
        ([0, 2], None, 1, None, 0),  # gaps: the highest flowing under the cap
        ([], None, 1, 1, None),
        ([0], 2, None, None, 0),
    ],
)
def test_choose_layer(flowing: list[int], pinned: int | None, preferred: int | None, adapted: int | None,
                      expected: int | None) -> None:
    assert choose_layer(flowing, pinned=pinned, preferred=preferred, adapted=adapted) == expected
