"""The aiohttp application: REST API, `/ws`, `/metrics`, static files; owns the media server's life."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from sfu.server import MediaConfig, MediaServer
from signalling import api, keys
from signalling.config import Config
from signalling.health import DRAIN, Drain, drain_middleware, readyz
from signalling.hub import Hub
from signalling.metrics import make_registry, metrics_handler
from signalling.session import websocket_handler

STATIC_DIR = Path(__file__).parent / "static"


def create_app(config: Config, *, rng: random.Random | None = None) -> web.Application:
    """Build the app; the media server starts with the app and closes with it."""
    media = MediaServer(MediaConfig(host=config.udp_host, port=config.udp_port,
                                    announced_ips=config.announced_ips, consent_timeout=config.consent_timeout))
    hub = Hub(media, grace=config.room_grace, rng=rng, observer_limit=config.max_observers,
              reconnect_grace=config.reconnect_grace)
    drain = Drain()
    app = web.Application(middlewares=[drain_middleware, api.auth_middleware], client_max_size=api.MAX_BODY)
    app[keys.CONFIG] = config
    app[keys.HUB] = hub
    app[DRAIN] = drain
    app[keys.METRICS], monitor = make_registry(hub, drain)
    api.add_routes(app)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/metrics", metrics_handler)
    static = Path(config.static_dir) if config.static_dir else STATIC_DIR
    if static.is_dir():
        app.router.add_static("/static", static)

    async def media_lifecycle(app: web.Application) -> AsyncIterator[None]:
        await media.start()
        monitor.start()
        yield
        await monitor.stop()
        for room in hub.rooms():
            hub.end_room(room.id, reason="server_shutdown")
        await media.close()

    app.cleanup_ctx.append(media_lifecycle)
    return app
