"""The v2 scenario's users: one /ws/v2/ device socket per account (docs/protocol.md).

DeviceConversationUser is one Locust user holding a group of `group` accounts (2: one
conversation, like ConversationUser; 4: six conversations, three on every socket), all on
this process (one clock). Every account opens one device socket, which carries all its
conversations, and sends `rate_per_user` messages/s on the same fixed schedule as the
legacy users (ConversationUser.converse), addressed to its partners in turn, as `send`
frames whose client_id is the message's marker. Rows, besides those of ConversationUser:

    WS connect device / reconnect device    open /ws/v2/ up to its sync.done (resume on reconnect)
    WS fanout sender_echo                   the ack on the sender's device socket
    WS fanout sender_device / partner_device message.created on the sender's / the receiver's device socket
    WS stray device                         a message.created on a socket of neither of its users

A dropped device socket (runs with faults, or faults.reconnect) is reopened with the
client's DeviceCursor: the server replays what the socket missed before its sync.done,
and those frames count like live ones (a duplicate or a reordering across the resume is
the server's). Unacknowledged sends are then sent again with their client_id.
"""

import json
import time

import gevent
from locust.exception import StopUser

from habitto_client import ChatError, DeviceCursor, DeviceSocket, v2_send_frame

from . import tracker as tracking
from .state import STATE
from .users import ConversationUser, LoadTestFailure, Participant

PING_SHARE = 0.8  # ping at 80% of the hello's heartbeat interval


class Device(Participant):
    """One account of a group: its device socket (`room`, where converse() sends), its
    partners (every other account of the group) and its resume cursor."""

    def __init__(self, session):
        super().__init__(session)
        self.partners = []
        self.cursor = DeviceCursor()

    def partner_of(self, seq):
        """The partner message `seq` goes to: each in turn, the same one on a resend."""
        return self.partners[seq % len(self.partners)]


class DeviceConversationUser(ConversationUser):
    """A group of accounts, each on one device socket (see module docstring)."""

    def on_start(self):
        accounts = STATE.take_group(self.scenario.group)
        if accounts is None:
            self.report("WS", "setup", 0, 0, LoadTestFailure("not enough provisioned accounts for the users"))
            raise StopUser()
        try:
            members = [Device(self.login(account)) for account in accounts]
            for me in members:
                me.partners = [other.id for other in members if other is not me]
                me.partner_id = me.partners[0]
            self.key = tuple(me.id for me in members)
            for index, me in enumerate(members):
                on_object, loads = self._device_handler(me), json.loads
                me.room = self.open_socket(None, "device",
                                           lambda text, now, on_object=on_object: on_object(loads(text), now, len(text)),
                                           self._resumed(me, on_object),
                                           opener=self._opener(me, STATE.ws_base_for(index)))
        except ChatError:
            self.close_sockets()
            STATE.conversation_done(self.environment)
            raise StopUser() from None
        self.participants = tuple(members)
        self.finished = False
        self.readers.append(gevent.spawn(self._heartbeat))

    def _opener(self, me, ws_base):
        def opener():
            return DeviceSocket.connect(ws_base, me.session.access, me.cursor, timeout=self.scenario.connect_timeout)

        return opener

    def _heartbeat(self):
        """The client's pings (hello's heartbeat): a socket without them is not kept alive."""
        interval = min(me.room.heartbeat for me in self.participants) * PING_SHARE
        deadline = time.monotonic() + self.scenario.run_time + 60
        while not self.closing and time.monotonic() < deadline:
            gevent.sleep(interval)
            for me in self.participants:
                try:
                    me.room.ping()
                except ChatError:
                    pass  # the receive loop reports the closed socket

    # -- frames ----------------------------------------------------------------------------------
    def _device_handler(self, me):
        """on_object(frame, arrival time, length): acks and message.created frames to the
        tracker, every frame through the cursor. Acks have a socket key of their own: an ack
        and the sender's message.created carry the same marker."""
        tracker, window = STATE.tracker, self.scenario.window
        device_key, ack_key = (id(me), "device"), (id(me), "ack")

        def on_object(obj, now, length=0):
            me.cursor.observe(obj)
            kind = obj.get("type")
            if kind == "message.created":
                message = obj["message"]
                if message["sender"] == me.id:
                    tracker.arrived(device_key, "sender_device", message["content"], now)
                elif message["receiver"] == me.id:
                    tracker.arrived(device_key, "partner_device", message["content"], now)
                else:
                    self.report("WS", "stray device", 0, length, LoadTestFailure("a message of other users"))
            elif kind == "ack":
                if window:
                    me.echoed(window)
                tracker.arrived(ack_key, "sender_echo", obj.get("client_id") or "", now)
            elif kind == "error":
                self.report("WS", "rejected", 0, length, LoadTestFailure(f"{obj.get('code')}: {obj.get('message')}"))

        return on_object

    def _resumed(self, me, on_object):
        """After a reconnect: what the server replayed before sync.done counts as delivered
        now; then the unacknowledged sends again, with their client_id."""
        def on_reopen(sock):
            me.room = sock
            now = time.monotonic()
            for frame in sock.replayed + sock.replayed_duplicates:  # the tracker judges duplicates
                on_object(frame, now)
            self.resend(me, sock)

        return on_reopen

    def frame_for(self, me, seq):
        content = tracking.make_content(STATE.run_id, me.id, seq, self.scenario.message_bytes)
        return json.dumps(v2_send_frame(me.partner_of(seq), content, tracking.marker(STATE.run_id, me.id, seq)))

    def check_store(self):
        """Runs with faults: every conversation of the group against the store."""
        members, stored = self.participants, set()
        try:
            for index, me in enumerate(members):
                for other in members[index + 1:]:
                    stored |= {tracking.parse_marker(m["content"], STATE.run_id)
                               for m in self.thread_since(me, 0, "store check", partner_id=other.id)}
        except ChatError:
            return  # reported; what is outstanding is then counted lost
        self.report_store(stored)
