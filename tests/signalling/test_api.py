from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.signalling.conftest import API_KEY, API_SECRET, Server


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {API_KEY}:wrong"},
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(f"{API_KEY}:nope".encode()).decode()},
    ],
)
async def test_unauthorized(server: Server, headers: dict[str, str]) -> None:
    status, body = await server.rest("GET", "/v1/rooms", headers=headers)
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_basic_auth_accepted(server: Server) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()}
    status, body = await server.rest("GET", "/v1/rooms", headers=basic)
    assert (status, body) == (200, {"rooms": []})


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/rooms", {"kind": "group"}, 400, "bad_request"),
        ("POST", "/v1/rooms", [1], 400, "bad_request"),
        ("POST", "/v1/rooms", {"kind": "family", "max_observers": 5}, 400, "bad_request"),
        ("POST", "/v1/rooms", {"kind": "family", "id": "has space"}, 400, "bad_request"),
        ("POST", "/v1/rooms", {"kind": "family", "id": "r1"}, 409, "room_exists"),
        ("GET", "/v1/rooms/nope", None, 404, "room_not_found"),
        ("POST", "/v1/rooms/nope/end", None, 404, "room_not_found"),
        ("POST", "/v1/rooms/r1/tokens", {"participant_id": "p", "role": "client", "ttl": 601}, 400, "ttl_too_long"),
        ("POST", "/v1/rooms/r1/tokens", {"participant_id": "p", "role": "admin"}, 400, "bad_request"),
        ("POST", "/v1/rooms/r1/tokens", {"participant_id": "a@b.c", "role": "client"}, 400, "bad_request"),
        ("POST", "/v1/rooms", {"kind": "family", "pad": "x" * 70_000}, 413, "request_too_large"),
    ],
)
async def test_rest_errors(server: Server, method: str, path: str, body: Any, status: int, code: str) -> None:
    await server.room("couples", id="r1")
    got_status, got = await server.rest(method, path, body)
    assert (got_status, got["error"]["code"]) == (status, code)


async def test_room_lifecycle(server: Server) -> None:
    status, room = await server.rest("POST", "/v1/rooms", {"kind": "family", "max_observers": 2})
    assert status == 201
    assert room["capacity"] == {"therapist": 1, "client": 6, "observer": 2} and room["state"] == "open"
    status, token = await server.rest("POST", f"/v1/rooms/{room['id']}/tokens",
                                      {"participant_id": "p1", "role": "therapist", "display_name": "Dr"})
    assert status == 200 and token["token"].count(".") == 2
    client = await server.client()
    joined = await client.join(token["token"])
    assert joined["participant"]["name"] == "Dr"
    status, got = await server.rest("GET", f"/v1/rooms/{room['id']}")
    assert got["participants"] == [{"id": "p1", "role": "therapist", "state": "active", "tracks": []}]
    assert "Dr" not in str(got)
    status, rooms = await server.rest("GET", "/v1/rooms")
    assert [r["id"] for r in rooms["rooms"]] == [room["id"]]
    status, ended = await server.rest("POST", f"/v1/rooms/{room['id']}/end")
    assert (status, ended["state"]) == (200, "ended")
    assert (await client.next_event("room_ended"))["reason"] == "ended_by_platform"
    await client.closed.wait()
    assert client.close_code == 4001
    status, err = await server.rest("POST", f"/v1/rooms/{room['id']}/tokens", {"participant_id": "p", "role": "client"})
    assert (status, err["error"]["code"]) == (409, "room_ended")
    assert (await server.rest("POST", f"/v1/rooms/{room['id']}/end"))[0] == 200


async def test_metrics(server: Server) -> None:
    room = await server.room("individual")
    client = await server.client()
    await client.join(server.token(room, "p1", "therapist"))
    async with server.http.get(server.url("/metrics")) as resp:
        text = await resp.text()
    assert 'confidant_rooms{kind="individual"} 1.0' in text
    assert 'confidant_participants{role="therapist",state="active"} 1.0' in text
    assert 'confidant_packets_dropped_total{reason="unknown_ssrc"}' in text
    assert "p1" not in text and room not in text
    await client.close()
