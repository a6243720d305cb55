from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from signalling.config import Config, ConfigError, load_config, resolve_credentials


def test_defaults_run_on_a_laptop() -> None:
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.http_host == "127.0.0.1"
    assert not cfg.has_credentials


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'http_port = 9000\nudp_port = 41000\nannounced_ips = ["10.0.0.5"]\napi_key = "k"\ndev = true\n'
        "token_max_ttl = 120\n"
    )
    env = {"CONFIDANT_UDP_PORT": "42000", "CONFIDANT_API_SECRET": "s", "CONFIDANT_ANNOUNCED_IPS": "1.2.3.4, 5.6.7.8"}
    cfg = load_config(path, env=env, http_port=9100)
    assert (cfg.http_port, cfg.udp_port, cfg.api_key, cfg.api_secret) == (9100, 42000, "k", "s")
    assert cfg.announced_ips == ("1.2.3.4", "5.6.7.8")
    assert cfg.dev is True and cfg.token_max_ttl == 120.0


@pytest.mark.parametrize(
    "env",
    [
        {"CONFIDANT_HTTP_PORT": "eighty"},
        {"CONFIDANT_HTTP_PORT": "70000"},
        {"CONFIDANT_DEV": "maybe"},
        {"CONFIDANT_LOG_FORMAT": "xml"},
        {"CONFIDANT_TOKEN_MAX_TTL": "0"},
    ],
)
def test_bad_env(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(env=env)


@pytest.mark.parametrize("text", ['nope = 1\n', 'http_port = "x"\n', "http_port = \n"])
def test_bad_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("kw", "ok"),
    [({}, False), ({"dev": True}, True), ({"api_key": "k", "api_secret": "s"}, True)],
)
def test_credentials(kw: dict[str, Any], ok: bool) -> None:
    cfg = Config(**kw)
    if not ok:
        with pytest.raises(ConfigError):
            resolve_credentials(cfg)
        return
    resolved = resolve_credentials(cfg)
    assert resolved.has_credentials
    if "api_key" in kw:
        assert (resolved.api_key, resolved.api_secret) == ("k", "s")
