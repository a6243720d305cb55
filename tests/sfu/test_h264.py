from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.h264 import is_keyframe, nal_types


@pytest.mark.parametrize(
    ("payload", "types", "key"),
    [
        (b"", [], False),
        (b"\x65\x88", [5], True),  # single NAL IDR
        (b"\x67\x42", [7], True),  # single NAL SPS
        (b"\x68\xce", [8], False),  # PPS alone
        (b"\x41\x9a", [1], False),  # non-IDR slice
        (b"\x06\x05", [6], False),  # SEI
        (b"\x78\x00\x02\x67\x42\x00\x02\x68\xce", [7, 8], True),  # STAP-A SPS+PPS
        (b"\x78\x00\x02\x06\x05\x00\x02\x41\x9a", [6, 1], False),
        (b"\x78\x00\x02\x06\x05\x00\x09\x65", [6], False),  # truncated second NAL ignored
        (b"\x78\x00", [], False),
        (b"\x7c\x85\x88", [5], True),  # FU-A start of IDR
        (b"\x7c\x05\x88", [], False),  # FU-A continuation of IDR
        (b"\x7c\x41\x9a", [], False),  # FU-A end
        (b"\x7c\x81\x9a", [1], False),
        (b"\x7c", [], False),
        (b"\x79\x00", [], False),  # STAP-B unsupported
        (b"\x00", [], False),
    ],
)
def test_nal_types(payload: bytes, types: list[int], key: bool) -> None:
    assert nal_types(payload) == types
    assert is_keyframe(memoryview(payload)) is key


@given(st.binary(max_size=40))
def test_fuzz_never_raises(payload: bytes) -> None:
    assert isinstance(is_keyframe(payload), bool)
