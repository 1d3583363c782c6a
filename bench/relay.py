"""The bare WebSocket relay: the yardstick every throughput figure of `make bench` is divided by.

    python -m bench.relay --port 18220 [--ws websockets]

A plain ASGI application under the same uvicorn set-up as the chat server (uvloop,
httptools, the same WebSocket implementation, frame limit and pings), speaking the
legacy room and inbox sockets and the /ws/v2/ device socket (docs/protocol.md) with no
framework, no authentication (the token's `user_id` claim is trusted), no database and no
outbox: a room frame is relayed to the room's sockets and, as inbox frames, to both users'
inbox sockets; a device socket's `send` is acknowledged and relayed as message.created to
every device socket of both users (a device opens with hello and sync.done; no resume). The
same Locust flood runs against it and against the chat server in one `make bench` run,
so "0.4x the relay" means what the framework, the checks and the database cost.
bench/stub_server.py (websockets' own server) is the other stand-in: it measures the load
generator, not the wire.
"""

import argparse
import itertools
import json
import re
import sys
import urllib.parse
from collections import defaultdict
from datetime import datetime, timezone

from habitto_client.tokens import jwt_user_id

ROOM = re.compile(r"/ws/chat/(\d+)-(\d+)/?")
INBOX = re.compile(r"/ws/(?:chat/inbox|notifications)/(\d+)/?")
DEVICE = re.compile(r"/ws/v2/?")
BAD_TOKEN = 4401
UNKNOWN_PATH = 4404


def now_text():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def room_frame(message_id, sender, receiver, content, created):
    """A legacy room frame (the fields the load tester reads)."""
    return json.dumps({"id": message_id, "sender": sender, "receiver": receiver, "content": content,
                       "created_at": created, "edited_at": None, "is_read": False, "client_id": None})


def inbox_frame(message_id, sender, receiver, content, created, other):
    """A legacy inbox frame for the owner whose counterpart is `other`."""
    return json.dumps({"message_id": message_id, "sender": sender, "receiver": receiver, "content": content,
                       "created_at": created, "counterpart_id": other, "counterpart_username": f"user{other}",
                       "counterpart_full_name": f"user{other}", "counterpart_profile_picture": None})


def created_frame(message_id, sender, receiver, content, created, client_id, other):
    """A /ws/v2/ message.created for a device of the user whose counterpart is `other`."""
    return json.dumps({"type": "message.created", "pair": sorted((sender, receiver)),
                       "message": {"id": message_id, "sender": sender, "receiver": receiver, "content": content,
                                   "created_at": created, "edited_at": None, "is_read": False,
                                   "client_id": client_id},
                       "counterpart": {"id": other, "username": f"user{other}", "full_name": f"user{other}",
                                       "profile_picture": None}})


def token_user(query_string):
    """The `user_id` claim of the `?token=` JWT, unverified; None when there is none."""
    token = urllib.parse.parse_qs(query_string).get("token", [""])[0]
    try:
        return jwt_user_id(token)
    except Exception:
        return None


class Relay:
    """The ASGI application: /healthz over HTTP, room and inbox sockets."""

    def __init__(self):
        self.rooms = defaultdict(set)  # (low, high) -> ASGI send callables
        self.inboxes = defaultdict(set)  # user id -> ASGI send callables
        self.devices = defaultdict(set)  # user id -> ASGI send callables of its /ws/v2/ sockets
        self.ids = itertools.count(1)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            await self.socket(scope, receive, send)
        elif scope["type"] == "http":
            found = scope["path"] == "/healthz"
            await send({"type": "http.response.start", "status": 200 if found else 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"status": "ok"}\n' if found else b""})
        elif scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async def socket(self, scope, receive, send):
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        user_id = token_user(scope["query_string"].decode("latin-1"))
        room, inbox = ROOM.fullmatch(scope["path"]), INBOX.fullmatch(scope["path"])
        if user_id is not None and DEVICE.fullmatch(scope["path"]):
            await self.device(user_id, receive, send)
            return
        if user_id is None or not (room or inbox):
            await send({"type": "websocket.close", "code": BAD_TOKEN if user_id is None else UNKNOWN_PATH})
            return
        members = self.rooms[(int(room[1]), int(room[2]))] if room else self.inboxes[int(inbox[1])]
        members.add(send)
        try:
            while (message := await receive())["type"] == "websocket.receive":
                if room and message.get("text"):
                    await self.relay(members, json.loads(message["text"]))
        finally:
            members.discard(send)

    async def device(self, user_id, receive, send):
        await send({"type": "websocket.send", "text": json.dumps(
            {"type": "hello", "user_id": user_id, "protocol": "2", "heartbeat": 25})})
        await send({"type": "websocket.send", "text": json.dumps(
            {"type": "sync.done", "after_id": 0, "since": now_text(), "replayed": 0})})
        await send({"type": "websocket.send", "text": '{"type": "presence.snapshot", "users": []}'})
        devices = self.devices[user_id]
        devices.add(send)
        try:
            while (message := await receive())["type"] == "websocket.receive":
                frame = json.loads(message.get("text") or "{}")
                if frame.get("type") == "send":
                    await self.relay_device(user_id, send, frame)
                elif frame.get("type") == "ping":
                    await _quietly(send, json.dumps({"type": "pong", "nonce": frame.get("nonce"),
                                                     "server_time": now_text()}))
        finally:
            devices.discard(send)

    async def relay_device(self, sender, send, frame):
        receiver, content, client_id = int(frame["to"]), frame["content"], frame["client_id"]
        message_id, created = next(self.ids), now_text()
        await _quietly(send, json.dumps({"type": "ack", "client_id": client_id, "message_id": message_id,
                                         "duplicate": False}))
        for owner, other in ((sender, receiver), (receiver, sender)):
            devices = self.devices.get(owner)
            if devices:
                text = created_frame(message_id, sender, receiver, content, created, client_id, other)
                for member in tuple(devices):
                    await _quietly(member, text)

    async def relay(self, members, frame):
        sender, receiver, content = frame["sender"], frame["receiver"], frame["content"]
        message_id, created = next(self.ids), now_text()
        text = room_frame(message_id, sender, receiver, content, created)
        for member in tuple(members):
            await _quietly(member, text)
        for owner, other in ((sender, receiver), (receiver, sender)):
            inboxes = self.inboxes.get(owner)
            if inboxes:
                text = inbox_frame(message_id, sender, receiver, content, created, other)
                for member in tuple(inboxes):
                    await _quietly(member, text)


async def _quietly(send, text):
    try:
        await send({"type": "websocket.send", "text": text})
    except Exception:  # that socket is closing; the others still get the frame
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="websockets", help="uvicorn WebSocket implementation (as the server's WS_IMPL)")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(Relay(), host=args.host, port=args.port, loop="uvloop", http="httptools", ws=args.ws,
                ws_max_size=65536, ws_ping_interval=20.0, ws_ping_timeout=20.0, ws_per_message_deflate=False,
                lifespan="on", log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
