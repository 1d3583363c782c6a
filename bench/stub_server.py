"""A protocol stub that costs almost nothing, to measure the load generator's own capacity.

    python -m bench.stub_server --port 18210

Speaks the legacy room and inbox sockets (docs/protocol.md) with no database, no
authentication check (the token's `user_id` claim is trusted), and fan-out with
websockets' broadcast: whatever rate the load tester reaches against it is the ceiling
of the load generator on this machine, not of the chat server.
"""

import argparse
import asyncio
import itertools
import json
from collections import defaultdict

from websockets.asyncio.server import broadcast, serve

from bench.relay import INBOX, ROOM, inbox_frame, now_text, room_frame, token_user


class Stub:
    def __init__(self):
        self.rooms = defaultdict(set)
        self.inboxes = defaultdict(set)
        self.ids = itertools.count(1)

    async def handler(self, conn):
        path, _, query = conn.request.path.partition("?")
        user_id = token_user(query)
        if user_id is None:
            await conn.close(4401, "bad token")
            return
        if match := ROOM.fullmatch(path):
            await self.room(conn, (int(match[1]), int(match[2])), user_id)
        elif match := INBOX.fullmatch(path):
            owner = int(match[1])
            self.inboxes[owner].add(conn)
            try:
                await conn.wait_closed()
            finally:
                self.inboxes[owner].discard(conn)
        else:
            await conn.close(4404, "unknown path")

    async def room(self, conn, key, user_id):
        members = self.rooms[key]
        members.add(conn)
        try:
            async for raw in conn:
                frame = json.loads(raw)
                sender, receiver, content = frame["sender"], frame["receiver"], frame["content"]
                message_id, created = next(self.ids), now_text()
                broadcast(members, room_frame(message_id, sender, receiver, content, created))
                for owner, other in ((sender, receiver), (receiver, sender)):
                    if self.inboxes.get(owner):
                        broadcast(self.inboxes[owner], inbox_frame(message_id, sender, receiver, content, created, other))
        finally:
            members.discard(conn)


def health(connection, request):
    if request.path == "/healthz":
        return connection.respond(200, '{"status": "ok"}\n')
    return None


async def main(host, port):
    stub = Stub()
    async with serve(stub.handler, host, port, process_request=health, compression=None,
                     max_queue=None, ping_interval=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18210)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.host, args.port))
