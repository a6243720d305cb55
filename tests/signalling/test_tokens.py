from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from signalling.tokens import Grants, Role, TokenError, mint_token, verify_token

KEY, SECRET, NOW = "key1", "s3cret-" * 10, 1_700_000_000.0


def mint(**kw: Any) -> str:
    args: dict[str, Any] = {
        "api_key": KEY, "api_secret": SECRET, "room_id": "room1", "participant_id": "p1", "role": "client", "now": NOW
    }
    args.update(kw)
    return mint_token(**args)


def raw(claims: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def unsigned(claims: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


GOOD = {"iss": KEY, "sub": "p1", "room": "room1", "role": "client", "iat": int(NOW), "exp": int(NOW) + 60}


@pytest.mark.parametrize(
    ("token", "now", "code"),
    [
        (mint(ttl=60), NOW + 69, None),  # within leeway
        (mint(ttl=60), NOW + 71, "token_expired"),
        (mint(api_secret="another-secret-" * 5 + ""), NOW, "invalid_token"),  # forged signature
        (mint(api_key="other-key"), NOW, "invalid_token"),
        (raw(GOOD, alg="HS512"), NOW, "invalid_token"),
        (unsigned(GOOD), NOW, "invalid_token"),
        (raw({**GOOD, "exp": int(NOW) + 3600}), NOW, "invalid_token"),  # TTL over max
        (raw({**GOOD, "role": "admin"}), NOW, "invalid_token"),
        (raw({k: v for k, v in GOOD.items() if k != "exp"}), NOW, "invalid_token"),
        (raw({**GOOD, "sub": "alice@example.com"}), NOW, "invalid_token"),  # ids must be opaque
        (raw({**GOOD, "grants": "all"}), NOW, "invalid_token"),
        ("not-a-jwt", NOW, "invalid_token"),
        ("", NOW, "invalid_token"),
    ],
)
def test_verify(token: str, now: float, code: str | None) -> None:
    if code is None:
        claims = verify_token(token, api_key=KEY, api_secret=SECRET, max_ttl=600, now=now)
        assert (claims.room_id, claims.participant_id, claims.role) == ("room1", "p1", Role.CLIENT)
        return
    with pytest.raises(TokenError) as info:
        verify_token(token, api_key=KEY, api_secret=SECRET, max_ttl=600, now=now)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("role", "grants", "expected"),
    [
        ("therapist", None, Grants(True, True)),
        ("client", Grants(False, True), Grants(False, True)),
        ("observer", None, Grants(False, True)),
        ("observer", Grants(True, True), Grants(False, True)),  # grants only narrow the role
    ],
)
def test_grants(role: str, grants: Grants | None, expected: Grants) -> None:
    token = mint(role=role, grants=grants, name="Alex")
    claims = verify_token(token, api_key=KEY, api_secret=SECRET, max_ttl=600, now=NOW)
    assert claims.grants == expected
    assert claims.name == "Alex"


@pytest.mark.parametrize(
    "kw",
    [{"ttl": 601}, {"ttl": 0}, {"participant_id": "a b"}, {"room_id": ""}, {"role": "admin"}],
)
def test_mint_refuses(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        mint(max_ttl=600, **kw)
