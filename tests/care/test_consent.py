"""A media path that dies while the WebSocket stays up (RFC 7675 consent), against the real server.

The cut is made in the network, not in the client: an nftables rule in the tests' private namespace drops
the participant's UDP in both directions, so the server sees exactly what a dead Wi-Fi link shows it,
silence, and nothing from either side says goodbye.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from client.media import Clip
from tests.care.conftest import care_server
from tests.care.participants import CareParticipant, Session, event, wait_for
from tests.integration.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Short enough for a test, and still two of the client's 5 s consent checks (sfu/ice.py) per window, so a
# live path never expires by accident.
CONSENT_TIMEOUT = 11.0
RECONNECT_GRACE = 4.0
CLOSE_TRANSPORT = 4002  # docs/protocol.md: the media transport closed


@pytest.fixture(scope="module")
def confidant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with care_server(tmp_path_factory.mktemp("consent"), consent_timeout=str(CONSENT_TIMEOUT),
                     reconnect_grace=str(RECONNECT_GRACE)) as server:
        yield server


class PathCut:
    """Drops every UDP datagram to or from the given local ports, until `restore()`."""

    def __init__(self, ports: list[int]) -> None:
        self.table = f"cf_cut_{uuid.uuid4().hex[:8]}"
        ports_set = ", ".join(map(str, ports))
        rules = (f"table inet {self.table} {{\n chain out {{\n type filter hook output priority 0;\n"
                 f" udp sport {{ {ports_set} }} drop\n udp dport {{ {ports_set} }} drop\n }}\n}}\n")
        subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True, capture_output=True)
        self.active = True

    def restore(self) -> None:
        if self.active:
            subprocess.run(["nft", "delete", "table", "inet", self.table], check=True, capture_output=True)
            self.active = False


def media_ports(p: CareParticipant) -> list[int]:
    links = (p.media.publish_link, p.media.subscribe_link)
    return [int(link.endpoint.local_address[1]) for link in links if link.endpoint is not None]


@pytest.fixture
async def session(confidant: RunningServer, clip: Clip) -> AsyncIterator[Session]:
    s = Session(confidant, clip, await confidant.create_room("couples", waiting_room=False))
    try:
        yield s
    finally:
        await s.close()


async def test_dead_media_path_closes_after_consent_then_rejoin_or_leave(
    confidant: RunningServer, session: Session
) -> None:
    async def join(pid: str, role: str = "client", tok: str | None = None) -> CareParticipant:
        p = await session.join(pid, role, tok=tok)
        await p.publish_media()
        return p

    therapist = await join("t", "therapist")
    a, b = await join("a"), await join("b")
    for p, others in ((therapist, (a, b)), (a, (therapist, b)), (b, (therapist, a))):
        await wait_for(lambda p=p, others=others: all(p.packets_from(o.pid) > 20 for o in others),
                       f"{p.pid} receiving")

    cut = PathCut(media_ports(a) + media_ports(b))
    try:
        # Silence on the media path alone: the WebSockets stay open, so only consent can notice.
        cut_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(a.signalling.closed.wait(), CONSENT_TIMEOUT + 10)
        waited = asyncio.get_running_loop().time() - cut_at
        # Consent was last refreshed at most one 5 s check interval before the cut.
        assert CONSENT_TIMEOUT - 6 <= waited <= CONSENT_TIMEOUT + 5, waited
        assert a.signalling.close_code == CLOSE_TRANSPORT
        await asyncio.wait_for(b.signalling.closed.wait(), 10)
        assert b.signalling.close_code == CLOSE_TRANSPORT
        await event(therapist, "participant_state", participant_id="a", state="reconnecting")
        await event(therapist, "participant_state", participant_id="b", state="reconnecting")
        assert not therapist.events("participant_left")
        closed = [line for line in confidant.log_path.read_text().splitlines() if "transport closed" in line]
        assert closed and all("consent_expired" in line for line in closed), closed
    finally:
        cut.restore()

    # `a` comes back within the grace period with the same token: the same participant, media both ways.
    before = therapist.packets_from("a")
    back = await join("a", tok=a._token)
    assert back.joined["participant"]["state"] == "active"  # type: ignore[index]
    await event(therapist, "participant_state", participant_id="a", state="active")
    await wait_for(lambda: therapist.packets_from("a") > before + 20, "therapist receiving the rejoined client")
    await wait_for(lambda: back.packets_from("t") > 20, "the rejoined client receiving the therapist")
    # `b` does not: after the grace period the others see it leave.
    left = await event(therapist, "participant_left", participant_id="b", timeout=RECONNECT_GRACE + 5)
    assert left["reason"] == "disconnected"
    assert not [e for e in therapist.events("participant_left") if e.get("participant_id") == "a"]
