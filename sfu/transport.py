"""`WebRtcTransport`: one peer connection's ICE + DTLS + SRTP, sans-I/O apart from an injected `send`.

Datagrams come in through `datagram_received(data, addr, now=...)` (or `stun_received` when the shell has
already parsed the STUN message to find us); decrypted RTP/RTCP goes out to the listener. `send_rtp` and
`send_rtcp` are the egress hot path: protect and hand to `send`, nothing else.
"""

from __future__ import annotations

import enum
import random
import secrets
from collections.abc import Callable
from typing import Literal, Protocol

from aioice import stun

from sfu.dtls import DtlsCertificate, DtlsSession, DtlsState
from sfu.ice import Addr, IceControlling, IceLite, StunOutcome, parse_stun
from sfu.srtp import SRTP_ERRORS, SrtpContext
from sfu.stats import DropReason, MediaStats

TransportRole = Literal["server", "client"]
# socket.sendto, or anything that copies `data` before returning: RTP goes out as a view of the SRTP
# session's buffer, which the next packet overwrites.
SendFn = Callable[[bytes | memoryview, Addr], object]
Protect = Callable[[bytes, bytes | memoryview], memoryview]  # sfu/srtp.py: header + payload -> view to send

_NOT_CONNECTED = DropReason.NOT_CONNECTED
_PROTECT_FAILED = DropReason.SRTP_PROTECT_FAILED
_SEND_FAILED = DropReason.SEND_FAILED
_UNPROTECT_FAILED = DropReason.SRTP_UNPROTECT_FAILED
_UNKNOWN_ADDRESS = DropReason.UNKNOWN_ADDRESS


class TransportState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class TransportListener(Protocol):
    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None: ...

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None: ...

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None: ...


def _ice_chars(n_bytes: int) -> str:
    # RFC 8445 section 5.3: ufrag >= 24 random bits, pwd >= 128 bits, from ice-char (RFC 8839 5.4).
    return secrets.token_urlsafe(n_bytes).replace("-", "+").replace("_", "/")


class WebRtcTransport:
    """One peer connection. Server role: ICE-lite + DTLS server; client role: ICE controlling + DTLS client."""

    def __init__(
        self,
        *,
        stats: MediaStats,
        certificate: DtlsCertificate,
        listener: TransportListener,
        send: SendFn,
        rng: random.Random,
        role: TransportRole = "server",
        consent_timeout: float = 30.0,
        on_close: Callable[[WebRtcTransport], None] | None = None,
    ) -> None:
        self.id = f"{rng.getrandbits(64):016x}"
        self.role: TransportRole = role
        self.state = TransportState.NEW
        self.close_reason: str | None = None
        self.ice_ufrag = _ice_chars(6)  # 8 chars
        self.ice_pwd = _ice_chars(18)  # 24 chars
        self.certificate = certificate
        self._stats = stats
        self._drops = stats.drops
        self._listener = listener
        self._send = send
        self._on_close = on_close
        self._ice: IceLite | IceControlling
        if role == "server":
            self._ice = IceLite(ufrag=self.ice_ufrag, pwd=self.ice_pwd, consent_timeout=consent_timeout)
        else:
            self._ice = IceControlling(
                ufrag=self.ice_ufrag, pwd=self.ice_pwd, rng=rng, consent_timeout=consent_timeout
            )
        self._dtls = DtlsSession(certificate, role=role)
        self._srtp: SrtpContext | None = None
        # Hot-path state: the bound protect method once keyed, the address media goes to once nominated.
        self._protect: Protect | None = None
        self._protect_rtcp: Protect | None = None
        self.remote_address: Addr | None = None
        self.addresses: set[Addr] = set()  # every address that passed an ICE check

    @property
    def fingerprint(self) -> tuple[str, str]:
        return self.certificate.fingerprint

    @property
    def srtp_profile(self) -> str | None:
        return None if self._srtp is None else self._srtp.profile.name

    def set_remote(self, *, ice_ufrag: str, ice_pwd: str, fingerprints: list[tuple[str, str]]) -> None:
        if isinstance(self._ice, IceLite):
            self._ice.set_remote(ufrag=ice_ufrag)
        else:
            self._ice.set_remote(ufrag=ice_ufrag, pwd=ice_pwd)
        was = self._dtls.state
        self._dtls.set_remote_fingerprints(fingerprints)
        self._after_dtls(was)  # a handshake that finished before the peer's SDP arrived completes now

    def connect(self, remote_addr: Addr, *, now: float) -> None:
        """Client role: start ICE checks toward the server's candidate; DTLS follows the nomination."""
        if not isinstance(self._ice, IceControlling):
            raise TypeError("connect() is for client-role transports; the server role is ICE-lite")
        if self.state is not TransportState.NEW:
            return
        self.addresses.add(remote_addr)
        self._set_state(TransportState.CONNECTING, None)
        self._send_one(self._ice.connect(remote_addr, now=now), remote_addr)

    # ---- ingress -----------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Addr, *, now: float) -> None:
        """Any datagram for this peer; demultiplexed by first byte (RFC 7983 section 7)."""
        first = data[0] if data else 255
        if 127 < first < 192:
            self.srtp_received(data, addr, now=now)
        elif 19 < first < 64:
            self.dtls_received(data, addr, now=now)
        elif first < 4:
            message = parse_stun(data)
            if message is None:
                self._drops[DropReason.STUN_MALFORMED] += 1
            else:
                self.stun_received(message, addr, now=now)
        else:
            self._drops[DropReason.NOT_WEBRTC] += 1

    def stun_received(self, message: stun.Message, addr: Addr, *, now: float) -> StunOutcome:
        """An already parsed STUN message. The outcome tells the shell whether `addr` is now ours."""
        if self.state is TransportState.CLOSED:
            self._drops[_NOT_CONNECTED] += 1
            return StunOutcome(drop=_NOT_CONNECTED)
        outcome = self._ice.stun_received(message, addr, now=now)
        if outcome.drop is not None:
            self._drops[outcome.drop] += 1
            return outcome
        if outcome.response is not None:
            self._send_one(outcome.response, addr)
        if outcome.validated:
            self.addresses.add(addr)
            if self.state is TransportState.NEW:
                self._set_state(TransportState.CONNECTING, None)
        if outcome.nominated:
            self.remote_address = addr
            if self.role == "client":
                self._send_all(self._dtls.start(now=now), addr)
            self._maybe_connected()
        return outcome

    def dtls_received(self, data: bytes, addr: Addr, *, now: float) -> None:
        if addr not in self.addresses:
            self._drops[_UNKNOWN_ADDRESS] += 1
            return
        if self.state is TransportState.CLOSED:
            self._drops[_NOT_CONNECTED] += 1
            return
        was = self._dtls.state
        out = self._dtls.datagram_received(data, now=now)
        # Before nomination, answer where the handshake came from; afterwards the nominated address.
        self._send_all(out, self.remote_address or addr)
        self._after_dtls(was)

    def srtp_received(self, data: bytes, addr: Addr, *, now: float) -> None:
        srtp = self._srtp
        if srtp is None:
            self._drops[_NOT_CONNECTED] += 1
            return
        if addr not in self.addresses:
            self._drops[_UNKNOWN_ADDRESS] += 1
            return
        # RFC 5761 section 4: RTCP packet types 192-223 sit where RTP has marker + payload type 64-95.
        if len(data) > 1 and 191 < data[1] < 224:
            plain = srtp.unprotect_rtcp(data)
            if plain is None:
                self._drops[_UNPROTECT_FAILED] += 1
            else:
                self._listener.on_rtcp(self, plain, now=now)
        else:
            plain = srtp.unprotect(data)
            if plain is None:
                self._drops[_UNPROTECT_FAILED] += 1
            else:
                self._listener.on_rtp(self, plain, now=now)

    # ---- egress (hot path) -------------------------------------------------------------------------

    def send_rtp(self, header: bytes, payload: bytes | memoryview = b"") -> bool:
        """Protect one RTP packet (`header` + `payload`, or a whole packet as `header`) and send it to the
        nominated address. False (and a counted drop) if not."""
        return self._send_protected(self._protect, header, payload)

    def send_rtcp(self, packet: bytes) -> bool:
        return self._send_protected(self._protect_rtcp, packet, b"")

    def _send_protected(self, protect: Protect | None, header: bytes, payload: bytes | memoryview) -> bool:
        if protect is None:
            self._drops[_NOT_CONNECTED] += 1
            return False
        try:
            data = protect(header, payload)
        except SRTP_ERRORS:
            self._drops[_PROTECT_FAILED] += 1
            return False
        try:
            self._send(data, self.remote_address)  # type: ignore[arg-type]  # set whenever _protect is
        except OSError:
            self._drops[_SEND_FAILED] += 1
            return False
        return True

    # ---- time --------------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        if self.state is TransportState.CLOSED:
            return None
        times = [t for t in (self._ice.consent_deadline, self._dtls.next_timer()) if t is not None]
        if isinstance(self._ice, IceControlling) and (t := self._ice.next_timer()) is not None:
            times.append(t)
        return min(times) if times else None

    def handle_timer(self, *, now: float) -> None:
        if self.state is TransportState.CLOSED:
            return
        ice = self._ice
        if ice.consent_expired(now=now):
            self.close("consent_expired")
            return
        if isinstance(ice, IceControlling):
            request = ice.handle_timer(now=now)
            if ice.failed:
                self._stats.ice_failures += 1
                self.close("ice_failed")
                return
            if request is not None and ice.remote is not None:
                self._send_one(request, ice.remote)
        was = self._dtls.state
        out = self._dtls.handle_timer(now=now)
        if out and self.remote_address is not None:
            self._send_all(out, self.remote_address)
        self._after_dtls(was)

    def close(self, reason: str = "closed") -> None:
        if self.state is TransportState.CLOSED:
            return
        out = self._dtls.close()
        if self.remote_address is not None:
            self._send_all(out, self.remote_address)
        self._protect = self._protect_rtcp = None
        self._srtp = None
        self.close_reason = reason
        self._set_state(TransportState.CLOSED, reason)
        if self._on_close is not None:
            self._on_close(self)

    # ---- internals ---------------------------------------------------------------------------------

    def _after_dtls(self, was: DtlsState) -> None:
        state = self._dtls.state
        if state is was:
            return
        if state is DtlsState.CONNECTED and self._dtls.keys is not None:
            self._srtp = SrtpContext(self._dtls.keys)
            self._maybe_connected()
        elif state is DtlsState.FAILED:
            self._stats.dtls_failures += 1
            self._drops[DropReason.DTLS_ERROR] += 1
            self.close(self._dtls.failure or "dtls_failed")
        elif state is DtlsState.CLOSED:
            self.close(self._dtls.failure or "dtls_closed")

    def _maybe_connected(self) -> None:
        # Media needs both keys and a nominated address; DTLS may finish before the controlling peer
        # nominates (RFC 8445 section 8.1.1), so whichever comes last connects.
        srtp = self._srtp
        if srtp is None or self.remote_address is None or self.state is not TransportState.CONNECTING:
            return
        self._protect = srtp.protect
        self._protect_rtcp = srtp.protect_rtcp
        self._set_state(TransportState.CONNECTED, None)

    def _set_state(self, state: TransportState, reason: str | None) -> None:
        self.state = state
        self._listener.on_state(self, state, reason)

    def _send_one(self, data: bytes, addr: Addr) -> None:
        try:
            self._send(data, addr)
        except OSError:
            self._drops[_SEND_FAILED] += 1

    def _send_all(self, datagrams: list[bytes], addr: Addr) -> None:
        for data in datagrams:
            self._send_one(data, addr)
