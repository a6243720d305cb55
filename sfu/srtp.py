"""SRTP/SRTCP (RFC 3711) for one peer connection: a pylibsrtp session per direction.

Wildcard-SSRC policies let any number of streams share the keys (RFC 5764 section 4.1), and repeats are
allowed so NACK retransmissions (same SSRC and sequence number) can be protected again.
"""

from __future__ import annotations

from collections.abc import Callable

import pylibsrtp
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

from sfu.dtls import AEAD_AES_128_GCM, AES128_CM_HMAC_SHA1_80, SrtpKeys, SrtpProfile

_LIBSRTP_PROFILES = {
    AEAD_AES_128_GCM: Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    AES128_CM_HMAC_SHA1_80: Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
}
REPLAY_WINDOW = 1024  # packets; libsrtp's maximum (RFC 3711 section 3.3.2 asks for at least 64)
# What a failed protect/unprotect can raise: libsrtp errors, oversize packets, non-bytes input.
SRTP_ERRORS = (pylibsrtp.Error, ValueError, TypeError)


class SrtpFailure(pylibsrtp.Error):
    """libsrtp refused a packet (authentication, replay, oversize)."""


# Room the protect calls may append (libsrtp's srtp.h bounds, as pylibsrtp names them).
_MAX_TRAILER: int = pylibsrtp.SRTP_MAX_TRAILER_LEN
_MAX_SRTCP_TRAILER: int = pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN


def _bind(session: Session, func: object, trailer: int) -> Callable[[bytes, bytes | memoryview], memoryview]:
    """One libsrtp call (protect or unprotect, RTP or RTCP) on `header` + `payload` written straight into
    `session`'s buffer, without pylibsrtp's per-call wrapper work (it allocates an `int *` and re-checks its
    arguments on every packet: on the egress path as much as the cipher itself).

    The result is a view of the session buffer, valid only until the next call: egress sends it at once,
    so it never builds the plaintext packet nor copies the ciphertext out; ingress copies it (`bytes`),
    since the parsed packet outlives the call. The session must outlive the closure.
    """
    ctx = session._srtp[0]
    cdata = session._cdata
    view = memoryview(session._buffer)
    limit = len(cdata) - trailer
    len_p = ffi.new("int *")
    call = func

    def process(header: bytes, payload: bytes | memoryview = b"") -> memoryview:
        h = len(header)
        n = h + len(payload)
        if n > limit:
            raise SrtpFailure("packet is too long")
        view[0:h] = header
        view[h:n] = payload
        len_p[0] = n
        if call(ctx, cdata, len_p):  # type: ignore[operator]
            raise SrtpFailure("libsrtp refused the packet")
        return view[0 : len_p[0]]

    return process


def _session(profile: SrtpProfile, key: bytes, ssrc_type: int) -> Session:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=_LIBSRTP_PROFILES[profile])
    policy.allow_repeat_tx = True
    policy.window_size = REPLAY_WINDOW
    return Session(policy)


class SrtpContext:
    """Inbound and outbound sessions. `unprotect*` return None on failure; `protect*` may raise SRTP_ERRORS.

    The transport calls `protect` directly on the egress hot path (and sends its result before calling it
    again: it is a view of the session's buffer).
    """

    def __init__(self, keys: SrtpKeys) -> None:
        self.profile = keys.profile
        self.inbound = _session(keys.profile, keys.remote, Policy.SSRC_ANY_INBOUND)
        self.outbound = _session(keys.profile, keys.local, Policy.SSRC_ANY_OUTBOUND)
        self.protect = _bind(self.outbound, lib.srtp_protect, _MAX_TRAILER)
        self.protect_rtcp = _bind(self.outbound, lib.srtp_protect_rtcp, _MAX_SRTCP_TRAILER)
        self._unprotect = _bind(self.inbound, lib.srtp_unprotect, 0)
        self._unprotect_rtcp = _bind(self.inbound, lib.srtp_unprotect_rtcp, 0)

    def unprotect(self, data: bytes) -> bytes | None:
        try:
            return bytes(self._unprotect(data, b""))
        except SrtpFailure:
            return None

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        try:
            return bytes(self._unprotect_rtcp(data, b""))
        except SrtpFailure:
            return None
