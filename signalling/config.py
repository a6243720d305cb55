"""One typed configuration for the `confidant` process, from a TOML file and `CONFIDANT_*` variables."""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "CONFIDANT_"


class ConfigError(ValueError):
    """The configuration file or environment holds a value we cannot use."""


@dataclass(frozen=True)
class Config:
    """Everything an operator can set. Defaults run on a laptop (loopback, dev mode off)."""

    http_host: str = "127.0.0.1"  # REST, WebSocket and /metrics
    http_port: int = 8080
    udp_host: str = "0.0.0.0"  # the one shared media UDP port
    udp_port: int = 40000
    announced_ips: tuple[str, ...] = ()  # IPs put in host candidates; empty = the bound address(es)
    api_key: str = ""
    api_secret: str = ""
    dev: bool = False  # generate (and print) an API key/secret when none is configured
    token_max_ttl: float = 600.0  # seconds; longer-lived join tokens are refused
    consent_timeout: float = 30.0  # RFC 7675 section 5.1: ICE consent expires after 30 s
    room_grace: float = 3600.0  # how long an ended room is remembered (late joiners get room_ended)
    max_observers: int = 2  # the most observers a room may allow (its own `max_observers` is set at creation)
    join_timeout: float = 10.0  # a WebSocket must send `join` within this many seconds
    reconnect_grace: float = 30.0  # a dropped participant keeps their place this long (care sessions)
    drain_timeout: float = 300.0  # after SIGTERM, sessions may continue this many seconds before the exit
    log_level: str = "info"
    log_format: str = "json"  # "json" (one object per line) or "kv" (key=value)
    static_dir: str = ""  # serve this directory at /static (empty: signalling/static when present)

    def __post_init__(self) -> None:
        for name in ("http_port", "udp_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be 0..65535")
        if self.drain_timeout < 0:
            raise ConfigError("drain_timeout must not be negative")
        if self.reconnect_grace < 0:
            raise ConfigError("reconnect_grace must not be negative")
        if self.token_max_ttl <= 0:
            raise ConfigError("token_max_ttl must be positive")
        if self.log_format not in ("json", "kv"):
            raise ConfigError("log_format must be 'json' or 'kv'")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("log_level must be debug, info, warning or error")

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.api_secret)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type; strings come from the environment."""
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            if isinstance(value, bool):
                raise TypeError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError(value)
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    except (ValueError, TypeError):
        raise ConfigError(f"bad value for {name}") from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """File values, then `CONFIDANT_<FIELD>` environment values, then explicit overrides (CLI flags)."""
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"cannot parse {path}: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(key, value)
    environ = os.environ if env is None else env
    for name in _FIELDS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw)
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value)
    return Config(**values)


def resolve_credentials(config: Config) -> Config:
    """Dev mode fills missing credentials with random ones; otherwise both must be configured."""
    if config.has_credentials:
        return config
    if not config.dev:
        raise ConfigError("api_key and api_secret are required (or run with --dev)")
    return dataclasses.replace(
        config,
        api_key=config.api_key or "dev-" + secrets.token_hex(4),
        api_secret=config.api_secret or secrets.token_urlsafe(32),
    )
