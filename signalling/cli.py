"""The `confidant` command: one process serving REST + WebSocket, the media UDP port and /metrics."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time

from aiohttp import web

from signalling import keys
from signalling.app import create_app
from signalling.config import Config, ConfigError, load_config, resolve_credentials
from signalling.health import DRAIN, occupied_rooms
from signalling.rooms import RoomState

log = logging.getLogger("confidant")


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Messages carry only opaque ids (rooms, participants, tracks)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class KvFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={ts} level={record.levelname.lower()} logger={record.name} msg={record.getMessage()!r}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else KvFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    # aiohttp's access log would record client IP addresses.
    logging.getLogger("aiohttp.access").disabled = True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="confidant", description="Confidant SFU: signalling + media + metrics")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--dev", action="store_true", default=None, help="generate and print API credentials")
    parser.add_argument("--http-host")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--udp-host")
    parser.add_argument("--udp-port", type=int)
    return parser.parse_args(argv)


async def drain(app: web.Application, deadline: float) -> None:
    """Refuse new rooms (and fail /readyz), then wait until every room is empty or `deadline` seconds pass."""
    app[DRAIN].start()
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    log.info("draining rooms=%d deadline_s=%.0f", occupied_rooms(app), deadline)
    while occupied_rooms(app) and loop.time() < until:
        await asyncio.sleep(min(0.5, max(0.0, until - loop.time())))
    log.info("drained remaining_rooms=%d", occupied_rooms(app))


async def serve(config: Config) -> None:
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port)
    await site.start()
    media = app[keys.HUB].media
    http_port = runner.addresses[0][1] if runner.addresses else config.http_port
    print(f"confidant listening on http://{config.http_host}:{http_port} "
          f"(ws /ws, metrics /metrics) media udp {config.udp_host}:{media.port}", flush=True)
    # SIGTERM drains (a rolling deploy must not cut a therapy session short); SIGINT stops at once.
    loop = asyncio.get_running_loop()
    stop, terminate = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, terminate.set)
    try:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(terminate.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if terminate.is_set() and not stop.is_set():
            draining = asyncio.create_task(drain(app, config.drain_timeout))
            await asyncio.wait([draining, waits[0]], return_when=asyncio.FIRST_COMPLETED)
            draining.cancel()
        for task in waits:
            task.cancel()
    finally:
        # End rooms before aiohttp waits for open WebSockets to finish: that ends their sessions.
        hub = app[keys.HUB]
        for room in hub.rooms():
            if room.state is RoomState.OPEN:
                hub.end_room(room.id, reason="server_shutdown")
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, dev=args.dev, http_host=args.http_host, http_port=args.http_port,
                             udp_host=args.udp_host, udp_port=args.udp_port)
        generated = not config.has_credentials
        config = resolve_credentials(config)
    except (ConfigError, OSError) as exc:
        print(f"confidant: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    if generated:
        print(f"dev mode: api_key={config.api_key} api_secret={config.api_secret}", flush=True)
    run = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    try:
        run(serve(config))
    except (KeyboardInterrupt, web.GracefulExit):
        pass
    return 0
