"""ICE-lite on simulated time: answering checks, refusing bad ones, nomination and consent (RFC 8445, 7675)."""

from __future__ import annotations

import random

import pytest
from aioice import stun

from sfu.dtls import DtlsCertificate
from sfu.ice import Addr, IceLite, parse_stun
from sfu.stats import DropReason, MediaStats
from sfu.transport import TransportState, WebRtcTransport

A: Addr = ("10.77.0.2", 50000)
B: Addr = ("10.77.0.2", 50001)
CERT = DtlsCertificate.generate()


def request(username: str, pwd: str, *, nominate: bool = False) -> stun.Message:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1
    message.attributes["ICE-CONTROLLING"] = 1
    if nominate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity(pwd.encode())
    parsed = parse_stun(bytes(message))  # as it arrives: integrity data captured by the parser
    assert parsed is not None
    return parsed


@pytest.fixture
def ice() -> IceLite:
    lite = IceLite(ufrag="srv1", pwd="server-password-0123456789", consent_timeout=30.0)
    lite.set_remote(ufrag="cli1")
    return lite


def test_valid_check_gets_an_authenticated_response_with_the_mapped_address(ice: IceLite) -> None:
    req = request("srv1:cli1", ice.pwd)
    outcome = ice.stun_received(req, A, now=0.0)
    assert outcome.drop is None and outcome.validated and not outcome.nominated
    assert outcome.response is not None
    response = parse_stun(outcome.response)  # also verifies FINGERPRINT
    assert response is not None
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == req.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == A
    assert response.check_message_integrity(ice.pwd.encode())
    assert "FINGERPRINT" in response.attributes
    assert ice.selected is None


@pytest.mark.parametrize(
    ("username", "pwd", "reason"),
    [
        ("srv1:cli1", "wrong-password-000000000", DropReason.STUN_BAD_INTEGRITY),
        ("other:cli1", "server-password-0123456789", DropReason.STUN_UNKNOWN_USERNAME),
        ("srv1:stranger", "server-password-0123456789", DropReason.STUN_UNKNOWN_USERNAME),
        ("srv1", "server-password-0123456789", DropReason.STUN_UNKNOWN_USERNAME),
    ],
)
def test_bad_checks_are_refused_with_a_reason(ice: IceLite, username: str, pwd: str, reason: DropReason) -> None:
    outcome = ice.stun_received(request(username, pwd, nominate=True), A, now=0.0)
    assert outcome.drop is reason and outcome.response is None and not outcome.validated
    assert ice.selected is None


def test_responses_and_other_methods_are_unexpected(ice: IceLite) -> None:
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    allocate = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    for message in (response, allocate):
        assert ice.stun_received(message, A, now=0.0).drop is DropReason.STUN_UNEXPECTED


def test_use_candidate_nominates_and_the_latest_nomination_wins(ice: IceLite) -> None:
    assert ice.stun_received(request("srv1:cli1", ice.pwd, nominate=True), A, now=0.0).nominated
    assert ice.selected == A
    ice.stun_received(request("srv1:cli1", ice.pwd), B, now=1.0)  # checked, not nominated: stays on A
    assert ice.selected == A
    assert ice.stun_received(request("srv1:cli1", ice.pwd, nominate=True), B, now=2.0).nominated
    assert ice.selected == B


def test_malformed_stun_is_not_parsed() -> None:
    good = bytes(request("srv1:cli1", "pw"))
    assert parse_stun(good[:-1]) is None
    assert parse_stun(good[:-4] + bytes(4)) is None  # bad FINGERPRINT
    assert parse_stun(b"\x00\x01\x00") is None


class Listener:
    def __init__(self) -> None:
        self.states: list[tuple[TransportState, str | None]] = []

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        raise AssertionError("no media expected")

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        raise AssertionError("no media expected")

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None:
        self.states.append((state, reason))


def server_transport(stats: MediaStats, sent: list[tuple[bytes, Addr]]) -> tuple[WebRtcTransport, Listener]:
    listener = Listener()
    transport = WebRtcTransport(
        stats=stats, certificate=CERT, listener=listener, send=lambda d, a: sent.append((d, a)),
        rng=random.Random(1), consent_timeout=30.0,
    )
    transport.set_remote(ice_ufrag="cli1", ice_pwd="unused-by-lite", fingerprints=[("sha-256", "00")])
    return transport, listener


def check(t: WebRtcTransport, addr: Addr, *, now: float, nominate: bool = True, pwd: str | None = None) -> None:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{t.ice_ufrag}:cli1"
    if nominate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity((pwd or t.ice_pwd).encode())
    t.datagram_received(bytes(message), addr, now=now)


def test_transport_counts_refused_checks_and_answers_good_ones() -> None:
    stats, sent = MediaStats(), []  # type: ignore[var-annotated]
    t, listener = server_transport(stats, sent)
    check(t, A, now=0.0, pwd="wrong")
    t.datagram_received(b"\x00\x01\x00\x00garbage", A, now=0.0)
    assert stats.drops == {DropReason.STUN_BAD_INTEGRITY: 1, DropReason.STUN_MALFORMED: 1}
    assert sent == [] and t.state is TransportState.NEW
    check(t, A, now=0.0)
    assert [addr for _, addr in sent] == [A]
    assert listener.states == [(TransportState.CONNECTING, None)]
    assert t.remote_address == A and A in t.addresses


def test_consent_expires_after_30_s_of_silence_and_not_before() -> None:
    stats, sent = MediaStats(), []  # type: ignore[var-annotated]
    t, listener = server_transport(stats, sent)
    check(t, A, now=0.0)
    check(t, A, now=20.0)  # a consent check refreshes
    assert t.next_timer() == pytest.approx(50.0)
    t.handle_timer(now=49.9)
    assert t.state is TransportState.CONNECTING
    t.handle_timer(now=50.0)
    assert listener.states[-1] == (TransportState.CLOSED, "consent_expired")
    check(t, A, now=51.0)  # too late: a closed transport answers nothing
    assert len(sent) == 2


def test_checks_from_an_unselected_address_do_not_keep_consent() -> None:
    stats, sent = MediaStats(), []  # type: ignore[var-annotated]
    t, listener = server_transport(stats, sent)
    check(t, A, now=0.0)
    check(t, B, now=20.0, nominate=False)
    t.handle_timer(now=30.0)
    assert listener.states[-1] == (TransportState.CLOSED, "consent_expired")
