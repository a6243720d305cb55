"""DtlsSession in memory: a server and a client exchange datagrams by hand (RFC 6347, RFC 5764)."""

from __future__ import annotations

import re

import pytest

from sfu.dtls import DATAGRAM_MTU, DtlsCertificate, DtlsSession, DtlsState, split_records
from sfu.srtp import SrtpContext

SERVER_CERT = DtlsCertificate.generate()
CLIENT_CERT = DtlsCertificate.generate()


def handshake(server: DtlsSession, client: DtlsSession, *, now: float = 0.0) -> int:
    """Run the handshake to quiescence; returns how many datagrams crossed."""
    to_server = client.start(now=now)
    server.start(now=now)
    crossed = 0
    while to_server:
        to_client: list[bytes] = []
        for data in to_server:
            assert len(data) <= DATAGRAM_MTU
            to_client += server.datagram_received(data, now=now)
        to_server = []
        for data in to_client:
            assert len(data) <= DATAGRAM_MTU
            to_server += client.datagram_received(data, now=now)
        crossed += len(to_client) + len(to_server)
    return crossed


def pair(
    server_sees: list[tuple[str, str]] | None = None, client_sees: list[tuple[str, str]] | None = None
) -> tuple[DtlsSession, DtlsSession]:
    server = DtlsSession(SERVER_CERT, role="server")
    client = DtlsSession(CLIENT_CERT, role="client")
    server.set_remote_fingerprints(server_sees if server_sees is not None else [CLIENT_CERT.fingerprint])
    client.set_remote_fingerprints(client_sees if client_sees is not None else [SERVER_CERT.fingerprint])
    return server, client


def test_fingerprint_is_sha256_uppercase_hex_with_colons() -> None:
    algorithm, value = SERVER_CERT.fingerprint
    assert algorithm == "sha-256"
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", value)
    assert SERVER_CERT.fingerprint != CLIENT_CERT.fingerprint


def test_handshake_yields_matching_srtp_keys_both_ways() -> None:
    server, client = pair()
    assert handshake(server, client) > 0
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED
    assert server.keys is not None and client.keys is not None
    assert server.keys.profile.name == "AEAD_AES_128_GCM"  # first in our preference, as Chrome's
    assert server.keys.local == client.keys.remote and server.keys.remote == client.keys.local
    assert server.keys.local != server.keys.remote
    assert len(server.keys.local) == 16 + 12
    # And the keys work: what one side protects, the other unprotects.
    rtp = bytes.fromhex("80600001000000640000abcd") + b"payload"
    s, c = SrtpContext(server.keys), SrtpContext(client.keys)
    assert c.unprotect(s.outbound.protect(rtp)) == rtp
    assert s.unprotect(c.outbound.protect(rtp)) == rtp
    assert s.unprotect(s.outbound.protect(rtp)) is None  # our own outbound key is not the inbound one


@pytest.mark.parametrize(
    ("server_sees", "client_sees", "failed"),
    [
        ([("sha-256", "00:11")], None, "server"),
        (None, [("sha-256", CLIENT_CERT.fingerprint[1])], "client"),  # the wrong certificate's fingerprint
        (None, [("md5", "AA")], "client"),  # no supported algorithm
        (None, [], "client"),
    ],
)
def test_wrong_fingerprint_is_refused(
    server_sees: list[tuple[str, str]] | None, client_sees: list[tuple[str, str]] | None, failed: str
) -> None:
    server, client = pair(server_sees, client_sees)
    handshake(server, client)
    loser = server if failed == "server" else client
    assert loser.state is DtlsState.FAILED
    assert loser.failure == "dtls_fingerprint_mismatch"
    assert loser.keys is None


def test_handshake_that_finishes_before_the_peer_fingerprint_is_known_waits_for_it() -> None:
    # A browser answering our subscribe offer starts DTLS before its answer (and fingerprint) reaches us.
    server = DtlsSession(SERVER_CERT, role="server")
    client = DtlsSession(CLIENT_CERT, role="client")
    client.set_remote_fingerprints([SERVER_CERT.fingerprint])
    handshake(server, client)
    assert client.state is DtlsState.CONNECTED
    assert server.state is DtlsState.CONNECTING and server.keys is None  # no keys, no media, yet
    server.set_remote_fingerprints([CLIENT_CERT.fingerprint])
    assert server.state is DtlsState.CONNECTED and server.keys is not None


def test_late_fingerprint_that_does_not_match_fails_the_session() -> None:
    server = DtlsSession(SERVER_CERT, role="server")
    client = DtlsSession(CLIENT_CERT, role="client")
    client.set_remote_fingerprints([SERVER_CERT.fingerprint])
    handshake(server, client)
    server.set_remote_fingerprints([SERVER_CERT.fingerprint])  # not the client's certificate
    assert server.state is DtlsState.FAILED and server.failure == "dtls_fingerprint_mismatch"


def test_fingerprint_match_ignores_case_and_accepts_other_hashes() -> None:
    algorithm, value = SERVER_CERT.fingerprint
    server, client = pair(client_sees=[(algorithm.upper(), value.lower())])
    handshake(server, client)
    assert client.state is DtlsState.CONNECTED


def test_handshake_arms_a_retransmission_timer_until_done() -> None:
    server, client = pair()
    client.start(now=100.0)
    deadline = client.next_timer()
    assert deadline is not None and 100.0 < deadline <= 101.0  # RFC 6347 4.2.4.1: initial timer 1 s
    assert client.handle_timer(now=100.0) == []  # not yet due
    server, client = pair()
    handshake(server, client, now=5.0)
    assert client.next_timer() is None and server.next_timer() is None


def test_close_sends_close_notify_that_closes_the_peer() -> None:
    server, client = pair()
    handshake(server, client)
    alerts = client.close()
    assert alerts and client.state is DtlsState.CLOSED
    for data in alerts:
        server.datagram_received(data, now=1.0)
    assert server.state is DtlsState.CLOSED and server.failure == "dtls_closed"


def test_split_records_keeps_records_whole() -> None:
    def record(n: int) -> bytes:
        return bytes([22, 0xFE, 0xFD]) + bytes(8) + n.to_bytes(2, "big") + bytes(n)

    records = [record(500), record(600), record(100), record(1300)]
    out = split_records(b"".join(records), 1200)
    # 513 + 613 fit one datagram; + 113 would not; the 1,313-byte record goes alone (never cut).
    assert out == [records[0] + records[1], records[2], records[3]]
