"""SRTP/SRTCP (RFC 3711) for one peer connection: a pylibsrtp session per direction.

Wildcard-SSRC policies let any number of streams share the keys (RFC 5764 section 4.1), and repeats are
allowed so NACK retransmissions (same SSRC and sequence number) can be protected again.
"""

from __future__ import annotations

import pylibsrtp
from pylibsrtp import Policy, Session

from sfu.dtls import AEAD_AES_128_GCM, AES128_CM_HMAC_SHA1_80, SrtpKeys, SrtpProfile

_LIBSRTP_PROFILES = {
    AEAD_AES_128_GCM: Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    AES128_CM_HMAC_SHA1_80: Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
}
REPLAY_WINDOW = 1024  # packets; libsrtp's maximum (RFC 3711 section 3.3.2 asks for at least 64)
# What a failed protect/unprotect can raise: libsrtp errors, oversize packets, non-bytes input.
SRTP_ERRORS = (pylibsrtp.Error, ValueError, TypeError)


def _session(profile: SrtpProfile, key: bytes, ssrc_type: int) -> Session:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=_LIBSRTP_PROFILES[profile])
    policy.allow_repeat_tx = True
    policy.window_size = REPLAY_WINDOW
    return Session(policy)


class SrtpContext:
    """Inbound and outbound sessions. `unprotect*` return None on failure; `protect*` may raise SRTP_ERRORS.

    The transport calls `outbound.protect` directly on the egress hot path to save a call layer.
    """

    def __init__(self, keys: SrtpKeys) -> None:
        self.profile = keys.profile
        self.inbound = _session(keys.profile, keys.remote, Policy.SSRC_ANY_INBOUND)
        self.outbound = _session(keys.profile, keys.local, Policy.SSRC_ANY_OUTBOUND)

    def unprotect(self, data: bytes) -> bytes | None:
        try:
            return self.inbound.unprotect(data)
        except SRTP_ERRORS:
            return None

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        try:
            return self.inbound.unprotect_rtcp(data)
        except SRTP_ERRORS:
            return None
