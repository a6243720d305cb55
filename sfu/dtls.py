"""DTLS 1.2 over pyOpenSSL memory BIOs (RFC 6347), keyed for DTLS-SRTP (RFC 5764). Sans-I/O.

A `DtlsSession` takes datagrams and `now`, and returns the datagrams to send. When the handshake is done
and the peer's certificate matches a fingerprint from signalling, `keys` holds the SRTP master keys.
"""

from __future__ import annotations

import binascii
import datetime
import enum
import os
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

Role = Literal["server", "client"]

# RFC 8122 section 5: the hash functions a=fingerprint may name.
_DIGESTS: dict[str, hashes.HashAlgorithm] = {
    "sha-256": hashes.SHA256(),
    "sha-384": hashes.SHA384(),
    "sha-512": hashes.SHA512(),
}
# Keep every datagram under the IPv6 minimum MTU minus headers so a handshake flight never fragments.
DATAGRAM_MTU = 1200
_RECORD_HEADER = 13  # RFC 6347 section 4.1: type, version, epoch, sequence number, length
_CIPHERS = b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA"


@dataclass(frozen=True, slots=True)
class SrtpProfile:
    """An RFC 5764 section 4.1.2 protection profile: its OpenSSL name and master key/salt lengths."""

    name: str
    openssl_name: bytes
    key_length: int
    salt_length: int


# Chrome prefers GCM (RFC 7714 section 14.2); SHA1_80 is the one every WebRTC stack has (RFC 8827).
AEAD_AES_128_GCM = SrtpProfile("AEAD_AES_128_GCM", b"SRTP_AEAD_AES_128_GCM", 16, 12)
AES128_CM_HMAC_SHA1_80 = SrtpProfile("AES128_CM_HMAC_SHA1_80", b"SRTP_AES128_CM_SHA1_80", 16, 14)
SRTP_PROFILES = (AEAD_AES_128_GCM, AES128_CM_HMAC_SHA1_80)


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """Master key + salt for each direction, as libsrtp wants them (key then salt, concatenated)."""

    profile: SrtpProfile
    local: bytes  # protects what we send
    remote: bytes  # unprotects what we receive


def certificate_fingerprint(cert: x509.Certificate, algorithm: str = "sha-256") -> str:
    """RFC 8122 section 5 fingerprint: uppercase hex pairs joined by colons."""
    digest = cert.fingerprint(_DIGESTS[algorithm]).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class DtlsCertificate:
    """One ECDSA P-256 key and self-signed certificate, shared by every transport of the process."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.fingerprint: tuple[str, str] = ("sha-256", certificate_fingerprint(cert))
        self._context: SSL.Context | None = None

    @classmethod
    def generate(cls, *, days: int = 30) -> DtlsCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, binascii.hexlify(os.urandom(8)).decode())])
        # Certificate validity is wall-clock by nature; this is not media-plane time.
        start = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days + 1))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def context(self) -> SSL.Context:
        """One SSL context per certificate; each connection picks its role on its own."""
        if self._context is None:
            ctx = SSL.Context(SSL.DTLS_METHOD)
            ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
            # Self-signed peers: accept any chain here; identity is the fingerprint check afterwards.
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
            ctx.use_certificate(self.cert)
            ctx.use_privatekey(self.key)
            ctx.set_cipher_list(_CIPHERS)
            ctx.set_tlsext_use_srtp(b":".join(p.openssl_name for p in SRTP_PROFILES))
            self._context = ctx
        return self._context


class DtlsState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class DtlsSession:
    """One DTLS association. Feed it datagrams; send what `datagram_received`/`handle_timer` return."""

    def __init__(self, certificate: DtlsCertificate, *, role: Role) -> None:
        self.role: Role = role
        self.state = DtlsState.NEW
        self.keys: SrtpKeys | None = None
        self.failure: str | None = None  # why the session failed, for the transport's close reason
        self._remote_fingerprints: list[tuple[str, str]] | None = None  # None: signalling has not said yet
        # A peer may finish the handshake before its SDP (with the fingerprint) reaches us: a browser answering
        # our subscribe offer starts DTLS as soon as it applies the answer. Its certificate waits here.
        self._unverified: x509.Certificate | None = None
        self._ssl = SSL.Connection(certificate.context())
        self._ssl.set_ciphertext_mtu(DATAGRAM_MTU)
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()
        self._timer_at: float | None = None

    def set_remote_fingerprints(self, fingerprints: list[tuple[str, str]]) -> None:
        self._remote_fingerprints = list(fingerprints)
        cert, self._unverified = self._unverified, None
        if cert is not None and self.state is DtlsState.CONNECTING:
            self._verify_and_key(cert)

    def start(self, *, now: float) -> list[bytes]:
        """Begin the handshake; a client sends its ClientHello, a server waits for one."""
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
            if self.role == "client":
                self._handshake()
        return self._flush(now)

    def datagram_received(self, data: bytes, *, now: float) -> list[bytes]:
        """Process one DTLS datagram. Returns datagrams to send; check `state` afterwards."""
        if self.state in (DtlsState.FAILED, DtlsState.CLOSED):
            return []
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
        try:
            self._ssl.bio_write(data)
        except SSL.Error:
            return []
        if self.state is DtlsState.CONNECTING:
            self._handshake()
        else:
            try:
                # WebRTC media carries no application data over DTLS; reading surfaces alerts and
                # lets OpenSSL answer a retransmitted final flight.
                self._ssl.recv(1500)
            except SSL.ZeroReturnError:
                self.state = DtlsState.CLOSED
                self.failure = "dtls_closed"
            except SSL.WantReadError:
                pass
            except SSL.Error:
                pass  # a bad record after the handshake is discarded (RFC 6347 section 4.1.2.7)
        return self._flush(now)

    def next_timer(self) -> float | None:
        return self._timer_at if self.state is DtlsState.CONNECTING else None

    def handle_timer(self, *, now: float) -> list[bytes]:
        """Retransmit the last flight if OpenSSL's own timer (RFC 6347 section 4.2.4) has expired."""
        if self.state is not DtlsState.CONNECTING or self._timer_at is None or now < self._timer_at:
            return []
        try:
            self._ssl.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"dtls_timeout: {exc}")
            return []
        return self._flush(now)

    def close(self) -> list[bytes]:
        """Send close_notify if the association is up, so the peer learns at once."""
        out: list[bytes] = []
        if self.state is DtlsState.CONNECTED:
            try:
                self._ssl.shutdown()
            except SSL.Error:
                pass
            out = self._drain()
        self.state = DtlsState.CLOSED
        return out

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            self._fail(f"dtls_handshake_failed: {exc}")
            return
        self._handshake_done()

    def _handshake_done(self) -> None:
        cert = self._ssl.get_peer_certificate(as_cryptography=True)
        if cert is None:
            self._fail("dtls_no_peer_certificate")
            return
        if self._remote_fingerprints is None:
            self._unverified = cert  # no keys, so no media, until set_remote_fingerprints() verifies it
            return
        self._verify_and_key(cert)

    def _verify_and_key(self, cert: x509.Certificate) -> None:
        # RFC 8122 section 5: at least one supported fingerprint, and every supported one must match.
        supported = [(a.lower(), v.upper()) for a, v in self._remote_fingerprints or () if a.lower() in _DIGESTS]
        if not supported or any(certificate_fingerprint(cert, a) != v for a, v in supported):
            self._fail("dtls_fingerprint_mismatch")
            return
        selected = self._ssl.get_selected_srtp_profile()
        profile = next((p for p in SRTP_PROFILES if p.openssl_name == selected), None)
        if profile is None:
            self._fail("dtls_no_srtp_profile")
            return
        # RFC 5764 section 4.2: client key, server key, client salt, server salt.
        k, s = profile.key_length, profile.salt_length
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (k + s))
        client = material[0:k] + material[2 * k : 2 * k + s]
        server = material[k : 2 * k] + material[2 * k + s : 2 * k + 2 * s]
        if self.role == "client":
            self.keys = SrtpKeys(profile, local=client, remote=server)
        else:
            self.keys = SrtpKeys(profile, local=server, remote=client)
        self.state = DtlsState.CONNECTED

    def _fail(self, reason: str) -> None:
        self.state = DtlsState.FAILED
        self.failure = reason

    def _flush(self, now: float) -> list[bytes]:
        out = self._drain()
        timeout = self._ssl.DTLSv1_get_timeout() if self.state is DtlsState.CONNECTING else None
        self._timer_at = None if timeout is None else now + timeout
        return out

    def _drain(self) -> list[bytes]:
        """Read what OpenSSL wrote and regroup it into datagrams on record boundaries."""
        chunks = []
        while True:
            try:
                chunk = self._ssl.bio_read(65536)
            except SSL.Error:  # WantReadError: the BIO is empty
                break
            if not chunk:
                break
            chunks.append(chunk)
        return split_records(b"".join(chunks), DATAGRAM_MTU)


def split_records(data: bytes, mtu: int) -> list[bytes]:
    """Pack whole DTLS records into datagrams of at most `mtu` bytes (a larger record goes alone)."""
    out: list[bytes] = []
    current = b""
    pos = 0
    while pos < len(data):
        if pos + _RECORD_HEADER > len(data):
            end = len(data)
        else:
            end = min(len(data), pos + _RECORD_HEADER + int.from_bytes(data[pos + 11 : pos + 13], "big"))
        record = data[pos:end]
        pos = end
        if current and len(current) + len(record) > mtu:
            out.append(current)
            current = b""
        current += record
    if current:
        out.append(current)
    return out
