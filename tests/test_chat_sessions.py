"""Sessions end on the server's word: logout closes the sockets opened with the revoked
token, deactivation closes all of a user's sockets (both with 4401)."""

import pytest
from asgiref.sync import sync_to_async
from rest_framework_simplejwt.tokens import AccessToken

from habitto_chat.tokens import revoke_access_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]


async def test_logout_closes_sockets_opened_with_the_revoked_token(ws, pair):
    """Revoking an access token closes the sockets opened with it (4401), not the user's others."""
    alice, bob, token_a, _, room = pair
    other_token = str(AccessToken.for_user(alice))
    revoked = await ws(room, token_a)
    kept = await ws(f"/ws/chat/inbox/{alice.pk}/", other_token)
    await sync_to_async(revoke_access_token)(AccessToken(token_a))
    closed = await revoked.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 4401, "reason": "session ended"}
    assert await kept.receive_nothing(timeout=0.3)


async def test_deactivating_a_user_closes_their_sockets(ws, pair):
    """Saving a user with is_active=False closes all their sockets with 4401."""
    alice, bob, token_a, token_b, room = pair
    room_socket = await ws(room, token_a)
    inbox_socket = await ws(f"/ws/chat/inbox/{alice.pk}/", token_a)
    bob_socket = await ws(room, token_b)
    alice.is_active = False
    await sync_to_async(alice.save)()
    for socket in (room_socket, inbox_socket):
        closed = await socket.receive_output(timeout=3)
        assert (closed["type"], closed["code"]) == ("websocket.close", 4401)
    assert await bob_socket.receive_nothing(timeout=0.3)
