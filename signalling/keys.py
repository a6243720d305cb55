"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from signalling.config import Config
from signalling.hub import Hub

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics_registry", CollectorRegistry)
