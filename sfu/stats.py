"""Counters the media plane keeps: plain integers on the hot path, exported at scrape time."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class DropReason(str, enum.Enum):
    """Why a datagram or packet was not processed or not forwarded. Each one is an operator-visible count."""

    UNKNOWN_ADDRESS = "unknown_address"  # datagram from an address no transport has seen via ICE
    NOT_WEBRTC = "not_webrtc"  # first byte matches none of STUN, DTLS, RTP/RTCP (RFC 7983)
    STUN_MALFORMED = "stun_malformed"
    STUN_BAD_INTEGRITY = "stun_bad_integrity"
    STUN_UNKNOWN_USERNAME = "stun_unknown_username"
    STUN_UNEXPECTED = "stun_unexpected"  # valid STUN we do not act on: stray responses, errors, other methods
    DTLS_ERROR = "dtls_error"
    NOT_CONNECTED = "not_connected"  # SRTP before the DTLS handshake finished
    SRTP_UNPROTECT_FAILED = "srtp_unprotect_failed"  # auth failure or replay
    RTP_MALFORMED = "rtp_malformed"
    RTCP_MALFORMED = "rtcp_malformed"
    UNKNOWN_SSRC = "unknown_ssrc"  # RTP for an SSRC no producer claims
    UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"
    LAYER_NOT_SELECTED = "layer_not_selected"  # simulcast layer this subscriber does not get
    WAITING_FOR_KEYFRAME = "waiting_for_keyframe"
    CONSUMER_PAUSED = "consumer_paused"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"
    SRTP_PROTECT_FAILED = "srtp_protect_failed"
    SEND_FAILED = "send_failed"
    PADDING_ONLY = "padding_only"


@dataclass
class MediaStats:
    """Process-wide media counters. Mutated on the hot path with plain `+=`; read by the metrics collector."""

    drops: Counter[DropReason] = field(default_factory=Counter)
    packets_forwarded: Counter[str] = field(default_factory=Counter)  # by media kind
    bytes_forwarded: Counter[str] = field(default_factory=Counter)
    packets_received: Counter[str] = field(default_factory=Counter)
    bytes_received: Counter[str] = field(default_factory=Counter)
    nacks_received: int = 0
    retransmissions_sent: int = 0
    plis_sent: int = 0
    firs_sent: int = 0
    plis_received: int = 0
    firs_received: int = 0
    ice_failures: int = 0
    dtls_failures: int = 0
    # Downlink adaptation (sfu/downlink.py), summed over subscribers.
    audio_only_entered: int = 0
    audio_only_exited: int = 0
    probes_sent: int = 0  # clusters
    probes_succeeded: int = 0
    probes_failed: int = 0
    layer_switches: int = 0  # adaptation changed a subscriber's layer

    def drop(self, reason: DropReason, n: int = 1) -> None:
        self.drops[reason] += n
