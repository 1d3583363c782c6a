"""Locust users built on habitto_client.

ChatSocketUser is the abstract WebSocket user: it logs in over HTTP, opens sockets and
runs one receive greenlet per socket, reporting every call to Locust with
`environment.events.request` (request_type "HTTP" or "WS", bounded names).

ConversationUser is one conversation between two provisioned accounts (a pair), all on
this process so that every latency is measured on one monotonic clock: both accounts
open their room socket and inbox socket, and each sends `rate_per_user` messages/s on a
fixed schedule. Stats rows:

    HTTP login                    WS connect room / connect inbox
    WS send                       time from the intended send slot until the frame was written
                                  (the generator's own lag; high values mean it is saturated)
    WS fanout sender_echo / partner_room / sender_inbox / partner_inbox / complete
                                  from the intended send slot until arrival (complete: the last)
    WS lost <path> / duplicate <path> / out_of_order <path> / stray <path>   (failures)
    WS rejected                   an {"error","code"} frame: the server refused a send
    WS closed room / closed inbox the server closed a socket during the run
"""

import json
import logging
import random
import time

import gevent
import gevent.event
from locust import User, constant, task
from locust.exception import StopUser

from habitto_client import (
    ChatError, ChatHTTP, ChatSocket, Session, SocketClosed, Timeout, inbox_url, jwt_user_id, room_url,
)

from . import tracker as tracking
from .state import STATE

logger = logging.getLogger("loadtests")


class LoadTestFailure(Exception):
    """A counted failure (lost, duplicate...): its message is the row's error text."""


def inbox_handler(owner_id, socket_key, on_object=None):
    """on_frame of an inbox socket: each frame is a delivery on sender_inbox (the owner sent
    it) or partner_inbox; on_object(frame), when given, sees every frame first."""
    tracker, loads = STATE.tracker, json.loads

    def on_frame(text, now):
        obj = loads(text)
        if on_object:
            on_object(obj)
        path = "sender_inbox" if obj.get("sender") == owner_id else "partner_inbox"
        tracker.arrived(socket_key, path, obj.get("content", ""), now)

    return on_frame


class ChatSocketUser(User):
    """Abstract: HTTP login, sockets with receive greenlets, timed and reported."""

    abstract = True
    wait_time = constant(1)

    def __init__(self, environment):
        super().__init__(environment)
        self.scenario = STATE.scenario
        self.api = ChatHTTP(self.host or STATE.http_base, timeout=self.scenario.connect_timeout)
        self.ws_base = STATE.ws_base
        self.sockets = []
        self.readers = []
        self.closing = False

    # -- reporting ---------------------------------------------------------------------
    def report(self, request_type, name, ms, length=0, exception=None):
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=ms,
            response_length=length, exception=exception, context={},
        )

    # -- HTTP ------------------------------------------------------------------------------
    def login(self, account):
        """A Session: POST /api/login/, or the account's pre-issued "access" token when the
        accounts file carries one (benchmarks: no password hashing during the run)."""
        if account.get("access"):
            access = account["access"]
            return Session(access, account.get("refresh", ""), jwt_user_id(access), account["username"])
        started = time.perf_counter()
        try:
            session = self.api.login(account["username"], account["password"])
        except ChatError as exc:
            self.report("HTTP", "login", (time.perf_counter() - started) * 1000, 0, exc)
            raise
        self.report("HTTP", "login", (time.perf_counter() - started) * 1000)
        return session

    # -- sockets -----------------------------------------------------------------------------
    def open_socket(self, url, kind, on_frame, on_close=None):
        """Open a socket and start its receive greenlet; on_frame(text, arrival_time);
        on_close(sock), when given, hears that the server closed it (after the report)."""
        started = time.perf_counter()
        try:
            sock = ChatSocket.open(url, timeout=self.scenario.connect_timeout)
        except ChatError as exc:
            self.report("WS", f"connect {kind}", (time.perf_counter() - started) * 1000, 0, exc)
            raise
        self.report("WS", f"connect {kind}", (time.perf_counter() - started) * 1000)
        self.sockets.append(sock)
        self.readers.append(gevent.spawn(self._receive_loop, sock, kind, on_frame, on_close))
        return sock

    def _receive_loop(self, sock, kind, on_frame, on_close):
        # Bounded in time: the whole run plus a minute, then it stops by itself.
        deadline = time.monotonic() + self.scenario.run_time + 60
        poll = self.scenario.receive_timeout
        monotonic = time.monotonic
        while not self.closing and monotonic() < deadline:
            try:
                text = sock.recv_text(poll)
            except Timeout:
                continue
            except (SocketClosed, ChatError) as exc:
                if not self.closing and not sock.closed_by_client:
                    self.report("WS", f"closed {kind}", 0, 0, exc)
                    if on_close:
                        on_close(sock)
                return
            on_frame(text, monotonic())

    def close_sockets(self):
        self.closing = True
        for sock in self.sockets:
            sock.close(timeout=0.5)
        gevent.joinall(self.readers, timeout=self.scenario.receive_timeout + 1)
        gevent.killall([g for g in self.readers if not g.dead], block=False)

    def on_stop(self):
        self.close_sockets()

    # -- the end of a conversation (self.key) -------------------------------------------------------
    def drain(self):
        """Wait for late deliveries, then count whatever is still missing as lost."""
        deadline = time.monotonic() + self.scenario.drain
        tracker = STATE.tracker
        while tracker.outstanding(self.key) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        lost, messages = tracker.give_up(self.key)
        for path, count in lost.items():
            for _ in range(count):
                self.report("WS", f"lost {path}", 0, 0, LoadTestFailure(f"{path} never arrived"))
        if messages:
            logger.error("conversation %s: %d messages incomplete after %.0f s drain: %s",
                         self.key, messages, self.scenario.drain, lost)

    def idle_until_stopped(self):
        """Idle until the runner stops this user (bounded by the run time)."""
        deadline = time.monotonic() + self.scenario.run_time + 60
        while time.monotonic() < deadline:
            gevent.sleep(1)


class Participant:
    """One account of a conversation: session and sockets."""

    def __init__(self, session):
        self.session = session
        self.id = session.user_id
        self.partner_id = None
        self.room = None
        self.seq = 0
        self.next_at = 0.0
        self.in_flight = 0  # sent, echo not back yet (closed-loop runs)
        self.can_send = gevent.event.Event()
        self.can_send.set()


class ConversationUser(ChatSocketUser):
    """Two accounts conversing at a fixed rate; every delivery timed (see module docstring)."""

    def on_start(self):
        pair = STATE.take_pair()
        if pair is None:
            self.report("WS", "setup", 0, 0, LoadTestFailure("not enough provisioned accounts for the users"))
            raise StopUser()
        try:
            a, b = (Participant(self.login(account)) for account in pair)
            a.partner_id, b.partner_id = b.id, a.id
            self.key = (a.id, b.id)
            for me in (a, b):
                token = me.session.access
                me.room = self.open_socket(room_url(self.ws_base, a.id, b.id, token), "room",
                                           self._room_handler(me))
                if self.scenario.inbox:
                    self.open_socket(inbox_url(self.ws_base, me.id, token), "inbox",
                                     inbox_handler(me.id, (id(me), "inbox")))
        except ChatError:
            self.close_sockets()
            STATE.conversation_done(self.environment)
            raise StopUser() from None
        self.participants = (a, b)
        self.finished = False

    # -- frames --------------------------------------------------------------------------
    def _room_handler(self, me):
        tracker, loads, window = STATE.tracker, json.loads, self.scenario.window

        def on_frame(text, now):
            obj = loads(text)
            sender = obj.get("sender")
            if sender is None:
                if "error" in obj:
                    self.report("WS", "rejected", 0, len(text),
                                LoadTestFailure(f"{obj.get('code')}: {obj.get('error')}"))
                else:
                    self.report("WS", "stray room", 0, len(text), LoadTestFailure("unexpected frame"))
                return
            if sender == me.id:
                path = "sender_echo"
                if window:
                    me.in_flight -= 1
                    if me.in_flight < window:
                        me.can_send.set()
            else:
                path = "partner_room"
            tracker.arrived((id(me), "room"), path, obj.get("content", ""), now)

        return on_frame

    # -- the schedule -----------------------------------------------------------------------
    def _start_time(self):
        """Monotonic start of sending: the shared start (sync_start) or now."""
        if STATE.start_at:
            wait = STATE.start_at - time.time()
            if wait > 0:
                gevent.sleep(wait)
            else:
                self.report("WS", "late start", -wait * 1000, 0,
                            LoadTestFailure("setup finished after the shared start time"))
        return time.monotonic()

    def converse(self):
        scenario, tracker, run_id = self.scenario, STATE.tracker, STATE.run_id
        interval = 1.0 / scenario.rate_per_user
        size = scenario.message_bytes
        start = self._start_time()
        end = start + scenario.duration
        for p in self.participants:
            p.next_at = start + random.random() * interval  # spread senders over the interval
        a, b = self.participants
        window = scenario.window
        dumps, monotonic = json.dumps, time.monotonic
        while True:
            me = a if a.next_at <= b.next_at else b
            intended = me.next_at
            if intended >= end:
                break
            delay = intended - monotonic()
            if delay > 0:
                gevent.sleep(delay)
            if window and me.in_flight >= window:
                # Closed loop (throughput runs): wait for an echo; latency then counts from
                # the actual send, so these runs measure capacity, not schedule latency.
                if not me.can_send.wait(timeout=max(0.0, end - monotonic())):
                    break
                intended = max(intended, monotonic())
            seq = me.seq
            content = tracking.make_content(run_id, me.id, seq, size)
            frame = dumps({"sender": me.id, "receiver": me.partner_id, "content": content})
            tracker.expect(me.id, seq, intended, self.key)
            if window:
                me.in_flight += 1
                if me.in_flight >= window:
                    me.can_send.clear()
            try:
                me.room.send_text(frame)
            except ChatError as exc:
                tracker.forget(me.id, seq)
                if window:
                    me.in_flight -= 1
                self.report("WS", "send", (monotonic() - intended) * 1000, 0, exc)
            else:
                self.report("WS", "send", (monotonic() - intended) * 1000, len(frame))
            me.seq = seq + 1
            me.next_at = intended + interval

    @task
    def run_conversation(self):
        try:
            self.converse()
            self.drain()
        finally:
            self.close_sockets()
            self.finished = True
            STATE.conversation_done(self.environment)
        self.idle_until_stopped()

