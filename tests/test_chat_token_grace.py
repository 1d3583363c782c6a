"""Sockets across token expiry (docs/protocol.md, "Token expiry"): the shipped app opens
its sockets with whatever access token it has stored and never reopens a room socket,
so a legacy socket honours a correctly signed, unrevoked token of an active user up to
SOCKET_TOKEN_GRACE past its expiry, and stays open past the expiry until logout,
deactivation or the end of the grace. Protocol 2 stays strict.

Short lifetimes are real: tokens expiring in a second, and a one-second grace where the
end of the grace is the point."""

import asyncio
import time
from datetime import timedelta

import jwt
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from habitto_chat.tokens import revoke_access_token, socket_token_grace
from tests.test_chat_sockets import (
    check_inbox_frame, check_room_frame, inbox, message_count, receive, room, send_frame,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]

WAIT = 3
QUIET = 0.3


@pytest.fixture
def alice(make_user):
    return make_user("alice", first_name="Alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def token(user, seconds):
    """An access token of `user` expiring `seconds` from now (negative: expired)."""
    access = AccessToken.for_user(user)
    access.set_exp(lifetime=timedelta(seconds=seconds))
    return access


def grace(settings, seconds):
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SOCKET_TOKEN_GRACE": seconds}


async def closed_with(communicator, code, timeout=WAIT):
    output = await communicator.receive_output(timeout)
    assert output["type"] == "websocket.close" and output["code"] == code, output
    return output


async def works(room_socket, inbox_socket, sender, receiver, text):
    """A send on the room socket echoes there and reaches the inbox socket."""
    await room_socket.send_json_to(send_frame(sender, receiver, text))
    echo = check_room_frame(await receive(room_socket), sender, receiver, text)
    frame = check_inbox_frame(await receive(inbox_socket), sender, sender, receiver, text)
    assert frame["message_id"] == echo["id"]


# --- opening with an expired token -------------------------------------------------------------


async def test_token_expired_a_minute_ago_opens_legacy_sockets(ws, alice, bob):
    """The default grace (the refresh-token lifetime): room send + echo, inbox frame."""
    assert socket_token_grace() == django_settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
    stale = str(token(alice, -60))
    room_socket, inbox_socket = await ws(room(alice, bob), stale), await ws(inbox(alice), stale)
    await works(room_socket, inbox_socket, alice, bob, "expired a minute ago")
    alias = await ws(f"/ws/notifications/{alice.pk}/", stale)
    assert await alias.receive_nothing(QUIET)


async def test_token_expired_beyond_the_grace_is_refused(ws, settings, alice, bob):
    grace(settings, 120)
    for path in (room(alice, bob), inbox(alice)):
        await closed_with(await ws(path, str(token(alice, -121))), 4401)
    inside = await ws(inbox(alice), str(token(alice, -110)))
    assert await inside.receive_nothing(QUIET), "inside the grace: open"


async def test_default_grace_ends_at_the_refresh_lifetime(ws, alice, bob):
    lifetime = django_settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds()
    await closed_with(await ws(room(alice, bob), str(token(alice, -lifetime - 60))), 4401)


async def test_revoked_expired_token_is_refused(ws, alice, bob):
    stale = token(alice, -60)
    await sync_to_async(revoke_access_token)(stale)
    await closed_with(await ws(room(alice, bob), str(stale)), 4401)


async def test_forged_token_is_refused_expired_or_not(ws, alice, bob):
    """Signed with any other key: refused, inside the grace or not expired at all."""
    for seconds in (-60, 600):
        claims = token(alice, seconds).payload
        forged = jwt.encode(claims, "not-the-server-key-" + "x" * 32, algorithm="HS256")
        await closed_with(await ws(room(alice, bob), forged), 4401)
        await closed_with(await ws(inbox(alice), forged), 4401)


async def test_unsigned_token_is_refused(ws, alice, bob):
    claims = token(alice, -60).payload
    unsigned = jwt.encode(claims, None, algorithm="none")
    await closed_with(await ws(room(alice, bob), unsigned), 4401)


async def test_refresh_token_is_refused(ws, alice, bob):
    """Wrong type: a refresh token (valid for days) never opens a socket."""
    refresh = await sync_to_async(RefreshToken.for_user)(alice)
    await closed_with(await ws(room(alice, bob), str(refresh)), 4401)
    await closed_with(await ws(inbox(alice), str(refresh)), 4401)


async def test_deactivated_users_expired_token_is_refused(ws, make_user, bob):
    sleeper = await sync_to_async(make_user)("sleeper", is_active=False)
    await closed_with(await ws(room(sleeper, bob), str(token(sleeper, -60))), 4401)
    await closed_with(await ws(inbox(sleeper), str(token(sleeper, -60))), 4401)


# --- an open legacy socket across its token's expiry -----------------------------------------------


async def test_open_legacy_socket_survives_expiry_until_logout(ws, alice, bob):
    """Open with a token expiring in 1 s, still working after it, closed when it is revoked."""
    short = token(alice, 1)
    room_socket, inbox_socket = await ws(room(alice, bob), str(short)), await ws(inbox(alice), str(short))
    await asyncio.sleep(max(0.0, short["exp"] - time.time()) + 0.3)
    assert await room_socket.receive_nothing(QUIET), "not closed at expiry"
    await works(room_socket, inbox_socket, alice, bob, "after expiry")
    await sync_to_async(revoke_access_token)(short)
    for communicator in (room_socket, inbox_socket):
        output = await closed_with(communicator, 4401)
        assert output["reason"] == "session ended"


async def test_open_legacy_socket_closed_on_deactivation_after_expiry(ws, alice, bob):
    short = token(alice, 1)
    room_socket = await ws(room(alice, bob), str(short))
    await asyncio.sleep(max(0.0, short["exp"] - time.time()) + 0.3)
    assert await room_socket.receive_nothing(QUIET)
    alice.is_active = False
    await sync_to_async(alice.save)()
    await closed_with(room_socket, 4401)


async def test_open_legacy_socket_closed_at_the_end_of_the_grace(ws, settings, alice, bob):
    """Grace 1 s, token expiring in 1 s: open past the expiry, closed 4401 once the grace ends."""
    grace(settings, 1)
    short = token(alice, 1)
    room_socket, inbox_socket = await ws(room(alice, bob), str(short)), await ws(inbox(alice), str(short))
    await asyncio.sleep(max(0.0, short["exp"] - time.time()) + 0.2)
    await works(room_socket, inbox_socket, alice, bob, "inside the grace")
    for communicator in (room_socket, inbox_socket):
        await closed_with(communicator, 4401, timeout=2)
    assert time.time() >= short["exp"] + 1
    await room_socket.send_json_to(send_frame(alice, bob, "after the grace"))
    assert await room_socket.receive_nothing(QUIET)
    assert await message_count() == 1


async def test_zero_grace_is_the_strict_rule(ws, settings, alice, bob):
    grace(settings, 0)
    await closed_with(await ws(room(alice, bob), str(token(alice, -1))), 4401)
    short = token(alice, 1)
    room_socket = await ws(room(alice, bob), str(short))
    await closed_with(room_socket, 4401, timeout=2.5)


# --- protocol 2 stays strict ---------------------------------------------------------------------


async def test_protocol_2_refuses_an_expired_token(ws, alice, bob):
    stale = str(token(alice, -60))
    await closed_with(await ws(room(alice, bob) + "?protocol=2&token=" + stale), 4401)
    await closed_with(await ws(inbox(alice) + "?protocol=2&token=" + stale), 4401)


async def test_protocol_2_socket_closes_at_expiry_while_legacy_stays(ws, alice, bob):
    short = token(alice, 1)
    strict = await ws(room(alice, bob) + "?protocol=2&token=" + str(short))
    strict_inbox = await ws(inbox(alice) + "?protocol=2&token=" + str(short))
    legacy = await ws(room(alice, bob), str(short))
    for communicator in (strict, strict_inbox):
        output = await closed_with(communicator, 4401, timeout=2.5)
        assert output["reason"] == "token expired"
    assert await legacy.receive_nothing(QUIET)
