"""ICE for one peer connection, sans-I/O: the SFU's lite agent and the replay client's controlling agent.

`IceLite` (RFC 8445 section 2.5) never sends checks; it answers authenticated binding requests, selects
the address the controlling peer nominates and keeps consent alive from its checks (RFC 7675).
`IceControlling` is the minimal full agent our clients need toward one known server address: it sends
nominating checks until answered, then consent checks.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from aioice import stun

from sfu.stats import DropReason

Addr = tuple[str, int]

# RFC 7675 section 5.1: consent is lost 30 s after the last successful check.
CONSENT_TIMEOUT = 30.0
# RFC 7675 section 5.1: consent checks every 5 s, randomised to 0.8-1.2 of that.
CONSENT_INTERVAL = 5.0
# RFC 8445 section 14.3: RTO for connectivity checks; we start low for LAN benchmarks and double.
CHECK_RTO_INITIAL = 0.1
CHECK_RTO_MAX = 1.6
CONNECT_TIMEOUT = 10.0  # no answer to our first checks for this long: ICE failed
# RFC 8445 section 5.1.2.1 with the peer-reflexive type preference (section 7.1.1), component 1.
PRFLX_PRIORITY = (110 << 24) | (65535 << 8) | (256 - 1)


@dataclass(frozen=True, slots=True)
class StunOutcome:
    """What one STUN message did. `response` goes back to the sender's address."""

    drop: DropReason | None = None
    response: bytes | None = None
    validated: bool = False  # authenticated: the sender's address belongs to this peer
    nominated: bool = False  # the sender's address is now the one we send to


_DROP_MALFORMED = StunOutcome(drop=DropReason.STUN_MALFORMED)
_DROP_INTEGRITY = StunOutcome(drop=DropReason.STUN_BAD_INTEGRITY)
_DROP_USERNAME = StunOutcome(drop=DropReason.STUN_UNKNOWN_USERNAME)
_DROP_UNEXPECTED = StunOutcome(drop=DropReason.STUN_UNEXPECTED)
_IGNORED = StunOutcome()


def parse_stun(data: bytes) -> stun.Message | None:
    """aioice's codec; None for anything it cannot parse."""
    try:
        return stun.parse_message(data)
    except (ValueError, struct.error, IndexError, KeyError):  # what untrusted bytes make it raise
        return None


def local_ufrag_of(message: stun.Message) -> str | None:
    """The `<receiver ufrag>` half of a binding request's USERNAME (RFC 8445 section 7.2.2)."""
    username = message.attributes.get("USERNAME")
    if not isinstance(username, str):
        return None
    return username.split(":", 1)[0]


def binding_response(request: stun.Message, addr: Addr, pwd: bytes) -> bytes:
    """RFC 8445 section 7.3.1.4 success response, signed with the pwd the request was signed with."""
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
    response.add_message_integrity(pwd)
    return bytes(response)


class IceLite:
    """The controlled, lite side: answers checks, selects the nominated address, tracks consent."""

    def __init__(self, *, ufrag: str, pwd: str, consent_timeout: float = CONSENT_TIMEOUT) -> None:
        self.ufrag = ufrag
        self.pwd = pwd
        self.remote_ufrag: str | None = None
        self.selected: Addr | None = None
        self.consent_deadline: float | None = None
        self._key = pwd.encode()
        self._consent_timeout = consent_timeout

    def set_remote(self, *, ufrag: str) -> None:
        self.remote_ufrag = ufrag

    def stun_received(self, message: stun.Message, addr: Addr, *, now: float) -> StunOutcome:
        if message.message_method != stun.Method.BINDING:
            return _DROP_UNEXPECTED
        if message.message_class == stun.Class.INDICATION:
            return _IGNORED  # RFC 8445 section 11: keepalive, needs no answer
        if message.message_class != stun.Class.REQUEST:
            return _DROP_UNEXPECTED  # a lite agent sends no requests, so expects no responses
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return _DROP_USERNAME
        ours, _, theirs = username.partition(":")
        if ours != self.ufrag or (self.remote_ufrag is not None and theirs != self.remote_ufrag):
            return _DROP_USERNAME
        if not message.check_message_integrity(self._key):
            return _DROP_INTEGRITY
        nominated = "USE-CANDIDATE" in message.attributes
        if nominated:
            # RFC 8445 section 7.3.1.5: the latest nomination wins, which also follows a client that moved.
            self.selected = addr
        if addr == self.selected:
            self.consent_deadline = now + self._consent_timeout
        return StunOutcome(response=binding_response(message, addr, self._key), validated=True, nominated=nominated)

    def consent_expired(self, *, now: float) -> bool:
        return self.consent_deadline is not None and now >= self.consent_deadline


class IceControlling:
    """The client side toward one server address: nominate at once (RFC 8445 section 8.1.1), keep consent."""

    def __init__(
        self, *, ufrag: str, pwd: str, rng: random.Random, consent_timeout: float = CONSENT_TIMEOUT
    ) -> None:
        self.ufrag = ufrag
        self.pwd = pwd
        self.remote: Addr | None = None
        self.selected: Addr | None = None
        self.consent_deadline: float | None = None
        self.failed = False
        self._rng = rng
        self._tie_breaker = rng.getrandbits(64)  # RFC 8445 section 7.1.1
        self._remote_ufrag = ""
        self._remote_key = b""
        self._consent_timeout = consent_timeout
        self._pending: dict[bytes, float] = {}  # transaction id -> when sent
        self._next_check: float | None = None
        self._rto = CHECK_RTO_INITIAL
        self._give_up_at: float | None = None

    def set_remote(self, *, ufrag: str, pwd: str) -> None:
        self._remote_ufrag = ufrag
        self._remote_key = pwd.encode()

    def connect(self, addr: Addr, *, now: float) -> bytes:
        """Start checking `addr`; returns the first request to send there."""
        self.remote = addr
        self._give_up_at = now + CONNECT_TIMEOUT
        return self._check(now)

    def next_timer(self) -> float | None:
        return self._next_check

    def handle_timer(self, *, now: float) -> bytes | None:
        """A request to send to `remote` when a retransmission or consent check is due, else None."""
        if self._next_check is None or now < self._next_check or self.failed:
            return None
        if self.selected is None and self._give_up_at is not None and now >= self._give_up_at:
            self.failed = True
            self._next_check = None
            return None
        return self._check(now)

    def consent_expired(self, *, now: float) -> bool:
        return self.consent_deadline is not None and now >= self.consent_deadline

    def stun_received(self, message: stun.Message, addr: Addr, *, now: float) -> StunOutcome:
        if message.message_method != stun.Method.BINDING or addr != self.remote:
            return _DROP_UNEXPECTED
        if message.message_class == stun.Class.REQUEST:
            # A full agent may check us too (our server is lite and will not); answer like a lite agent.
            username = message.attributes.get("USERNAME")
            if not isinstance(username, str) or username.partition(":")[0] != self.ufrag:
                return _DROP_USERNAME
            key = self.pwd.encode()
            if not message.check_message_integrity(key):
                return _DROP_INTEGRITY
            return StunOutcome(response=binding_response(message, addr, key), validated=True)
        if message.message_class != stun.Class.RESPONSE:
            return _DROP_UNEXPECTED  # error responses (e.g. 487 role conflict) and indications
        if message.transaction_id not in self._pending:
            return _DROP_UNEXPECTED
        if not message.check_message_integrity(self._remote_key):
            return _DROP_INTEGRITY
        del self._pending[message.transaction_id]
        nominated = self.selected is None
        self.selected = addr
        self.consent_deadline = now + self._consent_timeout
        if nominated:
            self._pending.clear()
            self._schedule_consent(now)
        return StunOutcome(validated=True, nominated=nominated)

    def _check(self, now: float) -> bytes:
        assert self.remote is not None
        tid = self._rng.randbytes(12)
        request = stun.Message(
            message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST, transaction_id=tid
        )
        request.attributes["USERNAME"] = f"{self._remote_ufrag}:{self.ufrag}"
        request.attributes["PRIORITY"] = PRFLX_PRIORITY
        request.attributes["ICE-CONTROLLING"] = self._tie_breaker
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self._remote_key)
        # Only the latest few transactions can still be answered usefully.
        if len(self._pending) >= 8:
            self._pending.pop(next(iter(self._pending)))
        self._pending[tid] = now
        if self.selected is None:
            self._next_check = now + self._rto
            self._rto = min(self._rto * 2, CHECK_RTO_MAX)
        else:
            self._schedule_consent(now)
        return bytes(request)

    def _schedule_consent(self, now: float) -> None:
        self._next_check = now + CONSENT_INTERVAL * self._rng.uniform(0.8, 1.2)
