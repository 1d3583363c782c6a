"""A WebSocket consumer base that reads the ASGI `receive()` directly.

Channels' `AsyncConsumer.__call__` runs `await_many_dispatch([receive, channel_receive])`,
which wraps every `receive()` in a new Task and waits on it with `asyncio.wait`, even for
a consumer without a channel layer: a Task, a wait set and two callbacks per frame, 8.6%
of the server's samples under a room flood (issue 14, docs/realtime.md). Here the
consumer's own task awaits `receive()` in a loop and dispatches each message in turn.

The Channels contract that the chat sockets and their tests rely on is kept:
- `websocket.connect` / `websocket.receive` / `websocket.disconnect` go to the same
  `websocket_*` handlers (`AsyncWebsocketConsumer`'s), through `dispatch`;
- `StopConsumer` (raised by `websocket_disconnect`) ends the consumer cleanly; any other
  exception propagates to the server, as in Channels;
- a consumer with a channel layer (`channel_layer_alias` not None) runs Channels' own
  loop unchanged: a layer failure must not interrupt a handler mid-way, and handlers
  must never overlap, which `await_many_dispatch` already guarantees. The chat sockets
  have no layer (the hub fans out to them), so only they take the direct path.
"""

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer


class DirectWebsocketConsumer(AsyncWebsocketConsumer):
    """`AsyncWebsocketConsumer` without a Task and an `asyncio.wait` per frame."""

    async def __call__(self, scope, receive, send):
        if get_channel_layer(self.channel_layer_alias) is not None:
            return await super().__call__(scope, receive, send)
        self.scope, self.base_send, self.channel_layer = scope, send, None
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message):
        """Channels' dispatch without its thread hop to close old database connections
        before every message (measured: the hop cost more than the rest of a frame's
        handling, docs/realtime.md). Handlers that use the ORM go through
        `database_sync_to_async`, which closes them itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

