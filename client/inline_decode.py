"""Run aiortc's decoders on the event loop instead of in one thread per received track.

aiortc 1.x starts a decoder thread per remote track and hands every encoded frame to it through a
`queue.Queue`, then every decoded frame back through `asyncio.run_coroutine_threadsafe`. A participant in
a family session receives 12 tracks, about 480 frames a second: two thread handoffs, a loop wakeup and a
Task per frame cost several times more CPU than decoding 160x120 VP8 or 20 ms of Opus, and seven such
processes on two cores fall behind real time. Here the same aiortc decoders (`get_decoder`) decode each
frame as soon as the jitter buffer completes it, on the loop, and the frames go straight into the track's
queue. Nothing else in the receive path changes: depacketisation, jitter buffer, NACK, PLI on decode
errors, RTCP are aiortc's own.

It replaces the `threading` and `queue` names inside `aiortc.rtcrtpreceiver` only, so every receiver
created after `install()` decodes inline; clients only, never the server (which never decodes).
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import aiortc
import av
from aiortc import rtcrtpreceiver
from aiortc.codecs import get_decoder


class _InlineDecoderQueue:
    """Stands in for a receiver's decoder `queue.Queue`: `put` decodes at once and feeds the track."""

    def __init__(self) -> None:
        self._output: asyncio.Queue[Any] | None = None
        self._error: threading.Event | None = None
        self._decoder: Any = None
        self._codec_name: str | None = None

    def bind(self, output: asyncio.Queue[Any], error: threading.Event) -> None:
        self._output, self._error = output, error

    def put(self, task: Any) -> None:
        assert self._output is not None and self._error is not None, "decoder queue used before its receiver ran"
        if task is None:  # the receiver stops: end the track, as aiortc's worker does
            self._decoder = None
            self._output.put_nowait(None)
            return
        codec, encoded_frame = task
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = get_decoder(codec), codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:
            # The receiver turns this into a PLI, as with aiortc's thread; the decoder keeps its state.
            rtcrtpreceiver.logger.warning("failed to decode %s frame: %s", codec.name, exc)  # where aiortc logs it
            self._error.set()
            return
        for frame in frames:
            self._output.put_nowait(frame)


class _InlineDecoderThread:
    """Stands in for the decoder thread: starting it binds the queue to the track; there is nothing to join."""

    def __init__(self, *, target: Any, name: str, args: tuple[Any, ...]) -> None:
        _loop, self._input, self._output, self._error = args

    def start(self) -> None:
        self._input.bind(self._output, self._error)

    def join(self, timeout: float | None = None) -> None:
        pass


def install() -> None:
    """Make every aiortc receiver created from now on decode on the event loop (idempotent)."""
    receiver_module: Any = rtcrtpreceiver
    if not all(hasattr(receiver_module, name) for name in ("decoder_worker", "threading", "queue")):
        raise RuntimeError(f"aiortc {aiortc.__version__} no longer decodes in a thread per receiver as 1.x "
                           "did; client.inline_decode needs updating")
    receiver_module.threading = SimpleNamespace(Thread=_InlineDecoderThread, Event=threading.Event)
    receiver_module.queue = SimpleNamespace(Queue=_InlineDecoderQueue)
