"""Liveness, readiness and drain: what a load balancer or orchestrator asks before sending work here.

`/healthz` (in api.py) answers while the process serves HTTP at all. `/readyz` answers 200 only while the media UDP
port is bound and the node accepts new rooms; a draining node answers 503 so that new sessions go
elsewhere while the sessions it holds carry on until they end or the drain deadline passes.
"""

from __future__ import annotations

import json

from aiohttp import web

from signalling import keys
from signalling.api import Handler, error_response


class Drain:
    """Whether this node still takes new rooms. Set once (SIGTERM); never cleared."""

    def __init__(self) -> None:
        self.draining = False

    def start(self) -> None:
        self.draining = True


DRAIN = web.AppKey("drain", Drain)


def occupied_rooms(app: web.Application) -> int:
    """Rooms that still hold at least one participant: what a drain waits for."""
    return sum(1 for room in app[keys.HUB].rooms() if room.members)


async def readyz(request: web.Request) -> web.Response:
    media = request.app[keys.HUB].media
    checks = {"udp_bound": media.bound, "accepting_rooms": not request.app[DRAIN].draining}
    ready = all(checks.values())
    return web.Response(status=200 if ready else 503, content_type="application/json",
                        text=json.dumps({"status": "ready" if ready else "not_ready", "checks": checks}))


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While draining, refuse new rooms (503); tokens, joins and everything else in existing rooms go on."""
    if request.app[DRAIN].draining and request.method == "POST" and request.path == "/v1/rooms":
        response = error_response("draining", "this node is draining; create the room on another node")
        response.set_status(503)
        return response
    return await handler(request)
