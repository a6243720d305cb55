"""Join tokens: JWT HS256 signed with the platform's API secret (docs/protocol.md section 3)."""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
LEEWAY = 10.0  # seconds of clock skew tolerated on `exp`/`iat`
PARTICIPANT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ROOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Role(str, enum.Enum):
    THERAPIST = "therapist"
    CLIENT = "client"
    OBSERVER = "observer"


class TokenError(Exception):
    """A token was refused. `code` is the protocol's stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Grants:
    publish: bool
    subscribe: bool

    @classmethod
    def for_role(cls, role: Role) -> Grants:
        return cls(publish=role is not Role.OBSERVER, subscribe=True)


@dataclass(frozen=True)
class JoinClaims:
    """A verified token. `name` is for the other participants' UI only and must never be logged."""

    room_id: str
    participant_id: str
    role: Role
    grants: Grants
    issued_at: int
    expires_at: int
    name: str | None = None


def mint_token(
    *,
    api_key: str,
    api_secret: str,
    room_id: str,
    participant_id: str,
    role: Role | str,
    ttl: float = 300.0,
    max_ttl: float = 600.0,
    name: str | None = None,
    grants: Grants | None = None,
    now: float | None = None,
) -> str:
    """Mint a join token (what a platform backend does). Raises ValueError on bad input or TTL > max."""
    role = Role(role)
    if ttl <= 0 or ttl > max_ttl:
        raise ValueError(f"ttl must be in (0, {max_ttl:g}] seconds")
    if not PARTICIPANT_ID_RE.match(participant_id):
        raise ValueError("participant_id must be 1-64 chars of [A-Za-z0-9_.:-]")
    if not ROOM_ID_RE.match(room_id):
        raise ValueError("room_id must be 1-64 chars of [A-Za-z0-9_-]")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": participant_id,
        "room": room_id,
        "role": role.value,
        "iat": issued,
        "exp": issued + int(ttl),
    }
    if name is not None:
        claims["name"] = name
    if grants is not None:
        claims["grants"] = {"publish": grants.publish, "subscribe": grants.subscribe}
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)


def verify_token(
    token: str,
    *,
    api_key: str,
    api_secret: str,
    max_ttl: float,
    now: float | None = None,
) -> JoinClaims:
    """Check algorithm, signature, expiry, TTL and claim shapes. Room checks belong to `rooms`."""
    if not isinstance(token, str) or not token:
        raise TokenError("invalid_token", "token missing")
    current = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("invalid_token", "token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError("invalid_token", "token algorithm must be HS256")
    try:
        # Expiry is checked below against our own `now`, so tests and callers share one clock.
        claims = jwt.decode(
            token,
            api_secret,
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenError("invalid_token", "token signature does not verify") from None
    except jwt.PyJWTError:
        raise TokenError("invalid_token", "token does not decode") from None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int) or isinstance(exp, bool) or isinstance(iat, bool):
        raise TokenError("invalid_token", "token needs integer exp and iat")
    if current > exp + LEEWAY:
        raise TokenError("token_expired", "token expired")
    if exp - iat > max_ttl:
        raise TokenError("invalid_token", "token lifetime exceeds the server's maximum")
    if iat > current + LEEWAY:
        raise TokenError("invalid_token", "token issued in the future")
    if claims.get("iss") != api_key:
        raise TokenError("invalid_token", "token issuer is not this API key")
    sub, room, name = claims.get("sub"), claims.get("room"), claims.get("name")
    if not isinstance(sub, str) or not PARTICIPANT_ID_RE.match(sub):
        raise TokenError("invalid_token", "token sub must be an opaque participant id")
    if not isinstance(room, str) or not ROOM_ID_RE.match(room):
        raise TokenError("invalid_token", "token room is missing or malformed")
    if name is not None and not (isinstance(name, str) and len(name) <= 128):
        raise TokenError("invalid_token", "token name must be a string of at most 128 chars")
    try:
        role = Role(claims.get("role"))
    except ValueError:
        raise TokenError("invalid_token", "token role must be therapist, client or observer") from None
    grants = _grants(role, claims.get("grants"))
    return JoinClaims(
        room_id=room, participant_id=sub, role=role, grants=grants, issued_at=iat, expires_at=exp, name=name
    )


def _grants(role: Role, raw: Any) -> Grants:
    default = Grants.for_role(role)
    if raw is None:
        return default
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k, True), bool) for k in ("publish", "subscribe")):
        raise TokenError("invalid_token", "token grants must be {publish: bool, subscribe: bool}")
    # A grant can only narrow what the role allows: an observer never publishes.
    return Grants(
        publish=default.publish and raw.get("publish", True),
        subscribe=default.subscribe and raw.get("subscribe", True),
    )
