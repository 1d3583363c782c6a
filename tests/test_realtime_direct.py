"""realtime/direct.py: the consumer base that reads the ASGI receive() directly.

Toy consumers through Channels' WebsocketCommunicator: the handler contract
(connect/receive/disconnect), no task per frame, StopConsumer and exceptions, and the
channel-layer path (Channels' own loop: groups, handlers never overlapping, a layer
handler's failure, cancellation). The chat sockets built on it: test_chat_sockets.py and the
live-server tests in tests/e2e/test_socket_limits.py.
"""

import asyncio

import pytest
from channels.exceptions import StopConsumer
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator

from habitto_chat.realtime.direct import DirectWebsocketConsumer

# Channels' websocket_disconnect closes old database connections (in a thread): allowed.
pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 3


class Recording(DirectWebsocketConsumer):
    """Records what its handlers saw, and in which task they ran."""

    channel_layer_alias = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []
        self.tasks = set()

    async def connect(self):
        self.seen.append("connect")
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        self.tasks.add(asyncio.current_task())
        if text_data == "boom":
            raise RuntimeError("handler failed")
        if text_data == "stop":
            raise StopConsumer()
        self.seen.append(text_data if text_data is not None else bytes_data)
        await self.send(text_data=f"echo {text_data}")

    async def disconnect(self, code):
        self.seen.append(("disconnect", code))


def communicator(consumer, path="/ws/x/"):
    """A communicator around one given consumer instance (so the test can look inside);
    `consumer.receive_tasks`: the tasks that awaited the ASGI receive()."""
    consumer.receive_tasks = set()

    async def app(scope, receive, send):
        async def recording_receive():
            consumer.receive_tasks.add(asyncio.current_task())
            return await receive()

        await consumer(scope, recording_receive, send)

    return WebsocketCommunicator(app, path)


async def test_frames_are_dispatched_in_order_from_the_consumers_own_task():
    consumer = Recording()
    comm = communicator(consumer)
    assert (await comm.connect(WAIT))[0]
    for n in range(5):
        await comm.send_to(text_data=f"f{n}")
    assert [await comm.receive_from(WAIT) for _ in range(5)] == [f"echo f{n}" for n in range(5)]
    await comm.disconnect(code=4000)
    assert consumer.seen == ["connect", "f0", "f1", "f2", "f3", "f4", ("disconnect", 4000)]
    # receive() awaited by the consumer's own task (the one running the handlers), not
    # by a Task per frame as under Channels' await_many_dispatch.
    assert consumer.receive_tasks == consumer.tasks and len(consumer.tasks) == 1
    assert comm.future.done() and comm.future.exception() is None


async def test_binary_frames_reach_receive_as_bytes():
    consumer = Recording()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    await comm.send_to(bytes_data=b"\x00\x01")
    await comm.receive_from(WAIT)
    assert consumer.seen[-1] == b"\x00\x01"
    await comm.disconnect()


async def test_stop_consumer_in_a_handler_ends_the_consumer_cleanly():
    consumer = Recording()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    await comm.send_to(text_data="stop")
    await asyncio.wait_for(asyncio.shield(comm.future), WAIT)
    assert comm.future.exception() is None
    assert ("disconnect", 1000) not in consumer.seen  # as in Channels: no disconnect handler


async def test_an_exception_in_a_handler_propagates_to_the_server():
    consumer = Recording()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    await comm.send_to(text_data="boom")
    with pytest.raises(RuntimeError, match="handler failed"):
        await comm.wait(WAIT)


async def test_an_unknown_message_type_is_an_error():
    consumer = Recording()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    await comm.send_input({"type": "websocket.nonsense"})
    with pytest.raises(ValueError, match="No handler"):
        await comm.wait(WAIT)


# --- with a channel layer ----------------------------------------------------------------------


@pytest.fixture
def memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.pop("default", None)
    yield get_channel_layer()
    channel_layers.backends.pop("default", None)


class Grouped(Recording):
    channel_layer_alias = "default"
    groups = ["room"]
    active = 0  # handlers running right now
    overlapped = False

    async def receive(self, text_data=None, bytes_data=None):
        await self._exclusive(super().receive(text_data, bytes_data))

    async def chat_note(self, message):
        if message.get("fail") == "stop":
            raise StopConsumer()
        if message.get("fail"):
            raise LookupError("layer handler failed")
        await self._exclusive(self.send(text_data=f"note {message['n']}"))

    async def _exclusive(self, work):
        self.active += 1
        self.overlapped |= self.active > 1
        try:
            await asyncio.sleep(0.01)  # yield: another handler would run now if allowed
            await work
        finally:
            self.active -= 1


async def test_layer_messages_reach_handlers_one_at_a_time(memory_layer):
    consumer = Grouped()
    comm = communicator(consumer)
    assert (await comm.connect(WAIT))[0]
    assert consumer.channel_name in memory_layer.groups["room"]  # joined on connect
    for n in range(3):
        await comm.send_to(text_data=f"f{n}")
        await memory_layer.group_send("room", {"type": "chat.note", "n": n})
    frames = {await comm.receive_from(WAIT) for _ in range(6)}
    assert frames == {f"echo f{n}" for n in range(3)} | {f"note {n}" for n in range(3)}
    assert not consumer.overlapped
    await comm.disconnect()
    assert memory_layer.groups.get("room", {}) == {}  # left its group on disconnect


async def test_a_failing_layer_handler_ends_the_consumer_with_its_error(memory_layer):
    consumer = Grouped()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    await memory_layer.group_send("room", {"type": "chat.note", "fail": True})
    with pytest.raises(LookupError, match="layer handler failed"):
        await comm.wait(WAIT)


async def test_stop_consumer_from_a_layer_handler_ends_it_cleanly(memory_layer):
    consumer = Grouped()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    await memory_layer.group_send("room", {"type": "chat.note", "fail": "stop"})
    await asyncio.wait_for(asyncio.shield(comm.future), WAIT)
    assert comm.future.exception() is None


async def test_cancelling_a_consumer_with_a_layer_ends_it(memory_layer):
    consumer = Grouped()
    comm = communicator(consumer)
    await comm.connect(WAIT)
    comm.future.cancel()  # what a server shutting down does to the app's task
    with pytest.raises(asyncio.CancelledError):
        await comm.future
