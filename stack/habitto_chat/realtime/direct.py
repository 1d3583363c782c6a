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
- a consumer with a channel layer (`channel_layer_alias` not None) gets its channel,
  its `groups`, and a second task reading the layer: one task for the socket's whole
  life, not one per message. Handlers still never run concurrently (one lock, taken only
  when a layer is in use), as under `await_many_dispatch`;
- when the consumer ends (disconnect, an exception, or its task is cancelled at
  shutdown) the layer reader is cancelled and awaited.
"""

import asyncio
import functools

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer


class DirectWebsocketConsumer(AsyncWebsocketConsumer):
    """`AsyncWebsocketConsumer` without a Task and an `asyncio.wait` per frame."""

    _dispatch_lock = None  # only with a channel layer: the layer reader runs beside us
    _layer_failure = None

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        reader = None
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            self._dispatch_lock = asyncio.Lock()
            reader = asyncio.get_running_loop().create_task(self._read_layer(asyncio.current_task()))
        try:
            while True:
                message = await receive()
                if self._dispatch_lock is None:
                    await self.dispatch(message)
                else:
                    async with self._dispatch_lock:
                        await self.dispatch(message)
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # The layer reader cancels us when its handler raised: re-raise what it raised.
            failure = self._layer_failure
            if failure is None:
                raise
            asyncio.current_task().uncancel()
            if not isinstance(failure, StopConsumer):
                raise failure from None
        finally:
            if reader is not None:
                reader.cancel()
                try:
                    await reader
                except asyncio.CancelledError:
                    pass

    async def _read_layer(self, consumer_task):
        try:
            while True:
                message = await self.channel_receive()
                async with self._dispatch_lock:
                    await self.dispatch(message)
        except asyncio.CancelledError:
            raise
        except BaseException as failure:  # StopConsumer or a handler's error ends the consumer
            self._layer_failure = failure
            consumer_task.cancel()

    async def dispatch(self, message):
        """Channels' dispatch without its thread hop to close old database connections
        before every message (measured: the hop cost more than the rest of a frame's
        handling, docs/realtime.md). Handlers that use the ORM go through
        `database_sync_to_async`, which closes them itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

