"""REST API for platform backends (docs/protocol.md section 2), authenticated by API key and secret."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from signalling import keys
from signalling.config import Config
from signalling.hub import Hub
from signalling.rooms import DEFAULT_OBSERVERS, Room, RoomError, RoomKind, RoomState
from signalling.tokens import Grants, Role, mint_token

MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STATUS = {"bad_request": 400, "ttl_too_long": 400, "unauthorized": 401, "room_not_found": 404,
           "room_exists": 409, "room_ended": 409, "request_too_large": 413}


def error_response(code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=_STATUS.get(code, 400))


def _authorized(request: web.Request, config: Config) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        presented = value.strip()
    elif scheme.lower() == "basic":
        try:
            presented = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    expected = f"{config.api_key}:{config.api_secret}"
    return hmac.compare_digest(presented.encode(), expected.encode())


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        if not _authorized(request, request.app[keys.CONFIG]):
            return error_response("unauthorized", "missing or wrong API key/secret")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return error_response("request_too_large", "request bodies are limited to 64 KiB")
        try:
            return await handler(request)
        except RoomError as exc:
            return error_response(exc.code, exc.message)
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise RoomError("request_too_large", "request bodies are limited to 64 KiB")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise RoomError("bad_request", "body is not JSON") from None
    if not isinstance(body, dict):
        raise RoomError("bad_request", "body must be a JSON object")
    return body


def room_json(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "kind": room.kind.value,
        "state": room.state.value,
        "max_observers": room.max_observers,
        "capacity": {role.value: n for role, n in room.capacity.items()},
        "waiting_room": room.waiting_room,
        "locked": room.locked,
        "created_at": room.created_at,
        "ended_at": room.ended_at,
        "admitted": {role.value: n for role, n in room.admitted.items()},  # counts; all an ended room keeps
        "participants": [  # names stay out of the platform API: it knows them already
            {"id": m.participant_id, "role": m.role.value, "state": m.state.value,
             "tracks": [{"id": t.id, "kind": t.kind} for t in m.tracks.values()]}
            for m in room.members.values()
        ],
    }


async def create_room(request: web.Request) -> web.Response:
    body = await _body(request)
    hub: Hub = request.app[keys.HUB]
    try:
        kind = RoomKind(body.get("kind"))
    except ValueError:
        raise RoomError("bad_request", "kind must be individual, couples or family") from None
    room_id, observers = body.get("id"), body.get("max_observers", DEFAULT_OBSERVERS)
    waiting_room = body.get("waiting_room", True)
    if not isinstance(waiting_room, bool):
        raise RoomError("bad_request", "waiting_room must be a boolean")
    if room_id is not None and not isinstance(room_id, str):
        raise RoomError("bad_request", "id must be a string")
    if not isinstance(observers, int) or isinstance(observers, bool):
        raise RoomError("bad_request", "max_observers must be an integer")
    room = hub.create_room(kind, room_id=room_id, max_observers=observers, waiting_room=waiting_room)
    return web.json_response(room_json(room), status=201)


async def list_rooms(request: web.Request) -> web.Response:
    hub: Hub = request.app[keys.HUB]
    return web.json_response({"rooms": [room_json(r) for r in hub.rooms()]})


async def get_room(request: web.Request) -> web.Response:
    hub: Hub = request.app[keys.HUB]
    return web.json_response(room_json(hub.registry.get(request.match_info["room_id"])))


async def end_room(request: web.Request) -> web.Response:
    hub: Hub = request.app[keys.HUB]
    return web.json_response(room_json(hub.end_room(request.match_info["room_id"])))


async def create_token(request: web.Request) -> web.Response:
    body = await _body(request)
    hub: Hub = request.app[keys.HUB]
    config: Config = request.app[keys.CONFIG]
    room = hub.registry.get(request.match_info["room_id"])
    if room.state is RoomState.ENDED:
        raise RoomError("room_ended", "the room has ended")
    pid, role, name = body.get("participant_id"), body.get("role"), body.get("display_name")
    ttl, grants = body.get("ttl", 300), body.get("grants")
    if not isinstance(pid, str) or role not in {r.value for r in Role}:
        raise RoomError("bad_request", "participant_id (string) and role (therapist|client|observer) are required")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        raise RoomError("bad_request", "display_name must be a string of at most 128 chars")
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
        raise RoomError("bad_request", "ttl must be a positive number of seconds")
    if ttl > config.token_max_ttl:
        raise RoomError("ttl_too_long", f"ttl must not exceed {config.token_max_ttl:g} s")
    parsed_grants = None
    if grants is not None:
        if not isinstance(grants, dict) or not all(isinstance(grants.get(k, True), bool)
                                                   for k in ("publish", "subscribe")):
            raise RoomError("bad_request", "grants must be {publish: bool, subscribe: bool}")
        parsed_grants = Grants(grants.get("publish", True), grants.get("subscribe", True))
    now = time.time()
    try:
        token = mint_token(api_key=config.api_key, api_secret=config.api_secret, room_id=room.id,
                           participant_id=pid, role=role, ttl=ttl, max_ttl=config.token_max_ttl, name=name,
                           grants=parsed_grants, now=now)
    except ValueError as exc:
        raise RoomError("bad_request", str(exc)) from None
    return web.json_response({"token": token, "expires_at": int(now) + int(ttl)})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/rooms", create_room)
    app.router.add_get("/v1/rooms", list_rooms)
    app.router.add_get("/v1/rooms/{room_id}", get_room)
    app.router.add_post("/v1/rooms/{room_id}/end", end_room)
    app.router.add_post("/v1/rooms/{room_id}/tokens", create_token)
    app.router.add_get("/healthz", healthz)
