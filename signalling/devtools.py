"""Development-mode routes: the demo page at `/` and demo join tokens at `POST /dev/token`.

Nothing here is reachable unless the configuration has `dev = true`: `add_dev_routes` adds no route
otherwise, so a production server never mints tokens without the platform's API credentials.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from signalling.config import Config
from signalling.rooms import Room, RoomError, RoomKind, RoomRegistry
from signalling.tokens import ROOM_ID_RE, Role, mint_token

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEMO_TOKEN_TTL = 300.0  # seconds; the SDK joins right away, so a short life is enough
MAX_NAME = 40


class RoomDirectory(Protocol):
    """What the routes need from the app's room owner (`signalling.hub.Hub` fits)."""

    registry: RoomRegistry

    def create_room(self, kind: RoomKind, *, room_id: str | None, max_observers: int) -> Room: ...


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def add_dev_routes(
    app: web.Application,
    *,
    config: Config,
    rooms: RoomDirectory,
    static_dir: Path = STATIC_DIR,
) -> None:
    """In dev mode only: `GET /` (demo page) and `POST /dev/token` (create the room if needed, mint a token).

    `rooms` is the app's room owner (the `Hub`), so demo rooms get their media router like REST-created ones.
    """
    if not config.dev:
        return
    index = static_dir / "index.html"

    async def demo_page(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-store"})

    async def demo_token(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "bad_request", "body must be a JSON object")
        if not isinstance(body, dict):
            return _error(400, "bad_request", "body must be a JSON object")
        try:
            kind = RoomKind(body.get("kind", "individual"))
            role = Role(body.get("role", "client"))
        except ValueError:
            return _error(400, "bad_request", "kind or role is not valid")
        room_id = body.get("room_id") or f"demo-{kind.value}"
        name = body.get("name")
        if not isinstance(room_id, str) or not ROOM_ID_RE.match(room_id):
            return _error(400, "bad_request", "room_id must be 1-64 chars of [A-Za-z0-9_-]")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
            return _error(400, "bad_request", f"name must be a string of at most {MAX_NAME} chars")
        try:
            room = rooms.registry.get(room_id)
        except RoomError:
            room = rooms.create_room(kind, room_id=room_id, max_observers=1)
        if room.kind is not kind:
            return _error(409, "room_exists", f"room {room_id} is a {room.kind.value} room")
        participant_id = f"demo-{role.value}-{secrets.token_hex(4)}"
        token = mint_token(
            api_key=config.api_key,
            api_secret=config.api_secret,
            room_id=room_id,
            participant_id=participant_id,
            role=role,
            ttl=min(DEMO_TOKEN_TTL, config.token_max_ttl),
            max_ttl=config.token_max_ttl,
            name=name or None,
        )
        return web.json_response(
            {"token": token, "room_id": room_id, "participant_id": participant_id, "ws_url": "/ws"}
        )

    app.router.add_get("/", demo_page)
    app.router.add_post("/dev/token", demo_token)
