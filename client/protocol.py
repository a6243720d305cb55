"""An asyncio client for Confidant's WebSocket protocol (docs/protocol.md section 4) on aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp

# How long close() waits for the server's side of the closing handshake, and then for the reader to end: a
# peer that never answers our close frame must not hang the caller (aiohttp's own wait is unbounded while
# another task is reading).
CLOSE_TIMEOUT = 5.0


class ProtocolError(Exception):
    """The server answered a request with `{"type": "error"}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignallingClient:
    """Requests get ids and awaited replies; everything else lands in `events` (an asyncio.Queue)."""

    def __init__(self, url: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url
        self._own_session = session is None
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._skipped: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url, max_msg_size=4 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                future = self._pending.pop(data.get("id"), None) if isinstance(data.get("id"), int) else None
                if future is not None and not future.done():
                    future.set_result(data)
                else:
                    self.events.put_nowait(data)
        finally:
            self.close_code = self._ws.close_code
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"websocket closed ({self.close_code})"))
            self._pending.clear()
            self.closed.set()

    async def send_raw(self, data: str | dict[str, Any]) -> None:
        assert self._ws is not None, "connect() first"
        await self._ws.send_str(data if isinstance(data, str) else json.dumps(data))

    async def request(self, message: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        """Send with a fresh id and wait for the reply; raises ProtocolError on an error reply."""
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout):  # the send too: a stalled socket must not hang the caller
                await self.send_raw({**message, "id": request_id})
                reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise ProtocolError(reply.get("code", "?"), reply.get("message", ""))
        return reply

    async def join(self, token: str, room_id: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "join", "token": token}
        if room_id is not None:
            message["room_id"] = room_id
        return await self.request(message)

    async def publish(self, sdp: str, *, video_codec: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "publish", "sdp": sdp}
        if video_codec is not None:
            message["video_codec"] = video_codec
        return await self.request(message)

    async def answer(self, offer_id: int, sdp: str) -> dict[str, Any]:
        return await self.request({"type": "answer", "offer_id": offer_id, "sdp": sdp})

    async def pin_layer(self, track_id: str, layer: int | None) -> dict[str, Any]:
        return await self.request({"type": "pin_layer", "track_id": track_id, "layer": layer})

    async def leave(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await self.request({"type": "leave"}, timeout=5)
        await self.close()

    async def next_event(self, *types: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of one of `types` (any type when none given); others stay queued, in order."""
        for i, event in enumerate(self._skipped):
            if not types or event.get("type") in types:
                return self._skipped.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if not types or event.get("type") in types:
                    return event
                self._skipped.append(event)

    def pending_events(self) -> list[dict[str, Any]]:
        """Events received and not yet taken by `next_event` (without waiting)."""
        while not self.events.empty():
            self._skipped.append(self.events.get_nowait())
        return list(self._skipped)

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)
        if self._reader is not None:
            with contextlib.suppress(Exception):  # TimeoutError included: the reader is then cancelled
                await asyncio.wait_for(self._reader, CLOSE_TIMEOUT)
        if self._own_session and self._session is not None:
            await self._session.close()
