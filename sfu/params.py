"""Typed parameters that signalling hands to the media plane (SDP never crosses this line)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class MediaKind(str, enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"


class HeaderExtension(str, enum.Enum):
    """RTP header extensions the SFU understands, by their SDP URI."""

    MID = "urn:ietf:params:rtp-hdrext:sdes:mid"  # RFC 8843 section 15
    RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"  # RFC 8852 section 4.3
    REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"  # RFC 8852 section 4.4
    AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"  # RFC 6464
    ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


@dataclass(frozen=True)
class Codec:
    """One negotiated codec. `rtx_payload_type` is set when RTX (RFC 4588) is negotiated for it."""

    mime: str  # "audio/opus", "video/VP8", "video/H264"
    payload_type: int
    clock_rate: int
    channels: int = 1
    fmtp: str = ""
    rtx_payload_type: int | None = None
    rtcp_feedback: tuple[str, ...] = ()  # e.g. ("nack", "nack pli", "ccm fir", "transport-cc")

    @property
    def name(self) -> str:
        return self.mime.split("/", 1)[1].upper()


@dataclass(frozen=True)
class Encoding:
    """One stream of a producer: a simulcast layer (by rid) or the single stream (by ssrc).

    Simulcast encodings are ordered from the lowest to the highest spatial layer.
    """

    rid: str | None = None
    ssrc: int | None = None
    rtx_ssrc: int | None = None
    max_bitrate: int | None = None  # bits per second, from the offer when known


@dataclass(frozen=True)
class ProducerParams:
    """What one publisher m-section sends: parsed from the publisher's offer."""

    kind: MediaKind
    mid: str
    codecs: tuple[Codec, ...]
    header_extensions: dict[HeaderExtension, int] = field(default_factory=dict)
    encodings: tuple[Encoding, ...] = ()
    cname: str | None = None


@dataclass(frozen=True)
class ConsumerParams:
    """What the SFU sends one subscriber for one producer: chosen by signalling for its offer."""

    kind: MediaKind
    mid: str
    codec: Codec
    ssrc: int
    rtx_ssrc: int | None = None
    header_extensions: dict[HeaderExtension, int] = field(default_factory=dict)
    cname: str = "confidant"
