"""Care-session participants for packet-level tests: replayed media, RTP counted per publishing participant."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from client.media import Clip
from client.replay import ReplaySession
from tests.integration.server import RunningServer
from tests.netns import HOST_ADDR

CLOSE_TIMEOUT = 30.0  # each participant's close is bounded (leave 5 s, socket close 5 s, reader 5 s)


class CareParticipant(ReplaySession):
    """A `ReplaySession` that knows which participant each received SSRC belongs to (from the offers'
    `a=ssrc:<ssrc> msid:<participant> <track>`) and keeps every non-offer event in `log`."""

    def __init__(self, ws_url: str, token: str, clip: Clip, *, host: str = HOST_ADDR,
                 local_addr: str | None = None) -> None:
        super().__init__(ws_url, token, clip, host=host, publish=False)
        if local_addr is not None:  # signalling from a chosen source address too (privacy test)
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local_addr, 0)))
            self.signalling = type(self.signalling)(ws_url, session=http)
            self._http: aiohttp.ClientSession | None = http
        else:
            self._http = None
        self.owner: dict[int, str] = {}  # received SSRC (media and RTX) -> publishing participant
        self.log: list[dict[str, Any]] = []

    @property
    def pid(self) -> str:
        return str(self.joined["participant"]["id"])  # type: ignore[index]

    async def _answer_offers(self) -> None:
        while True:
            event = await self.signalling.events.get()
            if event.get("type") != "offer":
                self.log.append(event)
                continue
            for line in str(event["sdp"]).splitlines():
                if line.startswith("a=ssrc:") and " msid:" in line:
                    ssrc, rest = line[len("a=ssrc:"):].split(" msid:", 1)
                    self.owner[int(ssrc)] = rest.split(" ", 1)[0]
            answer = await self.media.subscribe_answer(str(event["sdp"]))
            with contextlib.suppress(Exception):
                await self.signalling.answer(int(event["offer_id"]), answer)
            self.offers_answered += 1

    async def publish_media(self, timeout: float = 10.0) -> None:
        reply = await self.signalling.publish(await self.media.publish_offer())
        await self.media.publish_answered(str(reply["sdp"]), timeout=timeout)

    def packets_from(self, participant_id: str) -> int:
        return sum(c.packets for ssrc, c in self.media.received.items() if self.owner.get(ssrc) == participant_id)

    def packets_total(self) -> int:
        return sum(c.packets for c in self.media.received.values())

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e.get("type") == kind]

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return await self.signalling.request(message)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await super().close()
        if self._http is not None:
            await self._http.close()

    async def drop(self) -> None:
        """Vanish without `leave`, as a laptop going to sleep: the WebSocket and media just stop."""
        if self._offers is not None:
            self._offers.cancel()
        await self.signalling.close()
        await self.media.close()
        if self._http is not None:
            await self._http.close()


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def event(p: CareParticipant, kind: str, timeout: float = 10.0,
                where: Callable[[dict[str, Any]], bool] = lambda e: True, **fields: Any) -> dict[str, Any]:
    """The first logged event of `kind` whose fields match (and `where` holds)."""
    def match() -> dict[str, Any] | None:
        return next((e for e in p.events(kind) if all(e.get(k) == v for k, v in fields.items()) and where(e)),
                    None)

    await wait_for(lambda: match() is not None, f"{kind} {fields} at {p.pid}", timeout)
    found = match()
    assert found is not None
    return found


def token(server: RunningServer, room: str, pid: str, role: str, name: str | None = None, ttl: int = 300) -> str:
    from signalling.tokens import mint_token

    return mint_token(api_key=server.api_key, api_secret=server.api_secret, room_id=room, participant_id=pid,
                      role=role, ttl=ttl, name=name)


class Session:
    """People in one room, closed at the end of the test whatever happens."""

    def __init__(self, server: RunningServer, clip: Clip, room: str) -> None:
        self.server, self.clip, self.room = server, clip, room
        self.people: list[CareParticipant] = []

    async def join(self, pid: str, role: str = "client", name: str | None = None,
                   tok: str | None = None) -> CareParticipant:
        p = CareParticipant(self.server.ws_url, tok or token(self.server, self.room, pid, role, name), self.clip)
        self.people.append(p)
        await p.start()
        return p

    async def admitted(self, therapist: CareParticipant, pid: str, *, publish: bool = True) -> CareParticipant:
        """A client who waits, is admitted, then publishes."""
        p = await self.join(pid)
        assert p.joined["participant"]["state"] == "waiting"  # type: ignore[index]
        await therapist.request({"type": "admit", "participant_id": pid})
        await event(p, "admitted")
        if publish:
            await p.publish_media()
        return p

    async def close(self) -> None:
        closing = [asyncio.ensure_future(p.close()) for p in self.people]
        if not closing:
            return
        done, hung = await asyncio.wait(closing, timeout=CLOSE_TIMEOUT)
        for task in done:
            task.exception()  # retrieved: a failed close is the test's business, not a warning at exit
        if hung:  # say where, instead of a bare pytest-timeout in teardown
            stacks = [f"{task.get_coro()}: {task.get_stack(limit=8)}" for task in asyncio.all_tasks()]
            raise AssertionError(f"{len(hung)} participants did not close in {CLOSE_TIMEOUT} s; tasks: {stacks}")
