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
    WS reconnect room / inbox     reopening a dropped socket (runs with faults, or faults.reconnect)
    HTTP catch up                 after a reconnect, the thread since the last message seen
    WS resend                     protocol 2: an unacknowledged message sent again after a reconnect
    WS unacknowledged             a send never echoed and not stored (runs with faults)
    WS lost store                 echoed (acknowledged), yet not stored at the end (runs with faults)

With `protocol = 2` the sockets speak protocol 2: message.send frames whose client_id is
the message's marker, the ack as the echo. With faults, users behave like clients that
survive them: a dropped socket is reopened with the app's backoff, the thread since the
last message that socket saw is fetched over REST (catch up, as the app does on resume),
protocol-2 users send what is still unacknowledged again with the same client_id, and at
the end every message is checked against the stored thread (loadtests/faults.py reports
what that found per fault).
"""

import itertools
import json
import logging
import random
import time

import gevent
import gevent.event
from locust import User, constant, task
from locust.exception import StopUser

from habitto_client import (
    ChatError, ChatHTTP, ChatSocket, Session, SocketClosed, Timeout, inbox_url, jwt_user_id, room_frame,
    room_url, send_frame,
)

from . import faults
from . import tracker as tracking
from .state import STATE

logger = logging.getLogger("loadtests")


class LoadTestFailure(Exception):
    """A counted failure (lost, duplicate...): its message is the row's error text."""


def inbox_handler(owner_id, socket_key, on_object=None):
    """on_frame of a (legacy) inbox socket: each frame is a delivery on sender_inbox (the
    owner sent it) or partner_inbox; on_object(frame), when given, sees every frame first."""
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
    def open_socket(self, url, kind, on_frame, on_reopen=None, on_close=None, opener=None):
        """Open a socket and start its receive greenlet; on_frame(text, arrival_time).
        With on_reopen (and a scenario that reconnects) a dropped socket is reopened and
        on_reopen(new socket) called before reading from it. With on_close instead, the
        caller hears that the server closed it (on_close(sock)) and reopens it its own way.
        opener() opens the socket (default: ChatSocket.open(url); url None with an opener),
        also for every reconnect."""
        opener = opener or (lambda: ChatSocket.open(url, timeout=self.scenario.connect_timeout))
        sock = self._connect(opener, f"connect {kind}")
        self.readers.append(gevent.spawn(self._receive_loop, sock, opener, kind, on_frame, on_reopen, on_close))
        return sock

    def _connect(self, opener, name):
        started = time.perf_counter()
        try:
            sock = opener()
        except ChatError as exc:
            self.report("WS", name, (time.perf_counter() - started) * 1000, 0, exc)
            raise
        self.report("WS", name, (time.perf_counter() - started) * 1000)
        self.sockets.append(sock)
        return sock

    def _receive_loop(self, sock, opener, kind, on_frame, on_reopen, on_close):
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
                if self.closing or sock.closed_by_client:
                    return
                self.report("WS", f"closed {kind}", 0, 0, exc)
                if on_close is not None:
                    on_close(sock)
                    return
                if on_reopen is None or not self.scenario.reconnects:
                    return
                sock = self._reopen(opener, kind, deadline)
                if sock is None:
                    return
                on_reopen(sock)
                continue
            on_frame(text, monotonic())

    def _reopen(self, opener, kind, deadline):
        """Reconnect with the scenario's backoff (the app's: 1, 2, 4, 8, 10 s); None when
        the user is closing or the run is over."""
        delays = faults.backoff(self.scenario.faults)
        for attempt in itertools.count():
            gevent.sleep(delays[min(attempt, len(delays) - 1)])
            if self.closing or time.monotonic() > deadline:
                return None
            try:
                sock = self._connect(opener, f"reconnect {kind}")
            except ChatError:
                continue
            STATE.reconnects.append((time.monotonic(), kind))
            return sock

    def close_sockets(self):
        self.closing = True
        for sock in self.sockets:
            sock.close(timeout=0.5)
        gevent.joinall(self.readers, timeout=self.scenario.receive_timeout + 1)
        gevent.killall([g for g in self.readers if not g.dead], block=False)

    def on_stop(self):
        self.close_sockets()

    # -- the end of a conversation (self.key) ----------------------------------------------------
    def drain(self):
        """Wait for late deliveries, then count whatever is still missing as lost."""
        deadline = time.monotonic() + self.scenario.drain
        tracker = STATE.tracker
        while tracker.outstanding(self.key) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if tracker.journal is not None:
            self.check_store()
        lost, messages = tracker.give_up(self.key)
        for path, count in lost.items():
            for _ in range(count):
                self.report("WS", f"lost {path}", 0, 0, LoadTestFailure(f"{path} never arrived"))
        if messages:
            logger.error("conversation %s: %d messages incomplete after %.0f s drain: %s",
                         self.key, messages, self.scenario.drain, lost)

    def report_store(self, stored):
        """Judge this conversation's messages against the `stored` (sender, seq) set the
        server returned (tracker.reconcile) and report what that found."""
        unacked, not_stored = STATE.tracker.reconcile(self.key, stored)
        for _ in range(unacked):
            self.report("WS", "unacknowledged", 0, 0, LoadTestFailure("never echoed, not stored"))
        for _ in range(not_stored):
            self.report("WS", "lost store", 0, 0, LoadTestFailure("acknowledged, not stored"))
        self.report_count("acknowledged stored", sum(
            1 for f in STATE.tracker.journal.values() if f.conversation == self.key and f.stored and f.acked_at))

    def report_count(self, name, count):
        """An informative row (not a failure) counted `count` times."""
        for _ in range(count):
            self.report("WS", name, 0)

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
        self.last_id = {"room": 0, "inbox": 0}  # newest message id each socket saw (catch up after a reconnect)
        self.next_at = 0.0
        self.in_flight = 0  # sent, echo not back yet (closed-loop runs)
        self.can_send = gevent.event.Event()
        self.can_send.set()

    def echoed(self, window):
        """A closed-loop run's sender may send again."""
        self.in_flight -= 1
        if self.in_flight < window:
            self.can_send.set()


def _next_at(participant):
    return participant.next_at


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
            v2 = self.scenario.protocol == 2
            query = "&protocol=2" if v2 else ""
            for index, me in enumerate((a, b)):
                token, ws_base = me.session.access, STATE.ws_base_for(index)
                me.room = self.open_socket(room_url(ws_base, a.id, b.id, token) + query, "room",
                                           (self._room_handler_v2 if v2 else self._room_handler)(me),
                                           self._reopened(me, "room"))
                if self.scenario.inbox:
                    self.open_socket(inbox_url(ws_base, me.id, token) + query, "inbox",
                                     (self._inbox_handler_v2 if v2 else self._inbox_handler)(me),
                                     self._reopened(me, "inbox"))
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
            if sender is not None and obj.get("id", 0) > me.last_id["room"]:
                me.last_id["room"] = obj["id"]
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
                    me.echoed(window)
            else:
                path = "partner_room"
            tracker.arrived((id(me), "room"), path, obj.get("content", ""), now)

        return on_frame

    def _room_handler_v2(self, me):
        """Protocol 2: the ack (its client_id is the message's marker) is the sender's echo;
        the sender's own message.created is not counted again."""
        tracker, loads, window, key = STATE.tracker, json.loads, self.scenario.window, (id(me), "room")

        def on_frame(text, now):
            obj = loads(text)
            kind = obj.get("type")
            if kind == "ack":
                if window:
                    me.echoed(window)
                tracker.arrived(key, "sender_echo", obj.get("client_id") or "", now)
            elif kind == "message.created":
                message = obj["message"]
                me.last_id["room"] = max(me.last_id["room"], message["id"])
                if message["sender"] != me.id:
                    tracker.arrived(key, "partner_room", message["content"], now)
            elif kind == "error":
                self.report("WS", "rejected", 0, len(text), LoadTestFailure(f"{obj.get('code')}: {obj.get('message')}"))

        return on_frame

    def _inbox_handler_v2(self, me):
        tracker, loads, key = STATE.tracker, json.loads, (id(me), "inbox")

        def on_frame(text, now):
            obj = loads(text)
            if obj.get("type") != "message.created":
                return
            message = obj["message"]
            me.last_id["inbox"] = max(me.last_id["inbox"], message["id"])
            path = "sender_inbox" if message["sender"] == me.id else "partner_inbox"
            tracker.arrived(key, path, message["content"], now)

        return on_frame

    def _inbox_handler(self, me):
        def seen(obj):
            if obj.get("id", 0) > me.last_id["inbox"]:
                me.last_id["inbox"] = obj["id"]

        return inbox_handler(me.id, (id(me), "inbox"), seen)

    # -- surviving faults ---------------------------------------------------------------
    def _reopened(self, me, kind):
        """After a reconnect: send on the new room socket, and catch up with the thread since
        the last message this socket saw, as a client does (tracker.repaired)."""
        paths = {True: "sender_echo", False: "partner_room"} if kind == "room" else \
            {True: "sender_inbox", False: "partner_inbox"}

        def on_reopen(sock):
            if kind == "room":
                me.room = sock
            try:
                for message in self.thread_since(me, me.last_id[kind], "catch up"):
                    me.last_id[kind] = max(me.last_id[kind], message["id"])
                    STATE.tracker.repaired((id(me), kind), paths[message["sender"] == me.id],
                                           message["content"], time.monotonic())
            except ChatError:
                pass  # reported; the end-of-run check against the store still judges every message
            if kind == "room" and self.scenario.protocol == 2:
                self.resend(me, sock)

        return on_reopen

    def resend(self, me, sock):
        """Protocol 2: every message of `me` not acknowledged yet (nor found by the catch
        up) again, with its client_id: the server stores it once and acknowledges it."""
        for seq in STATE.tracker.unacknowledged(me.id, self.key):
            frame = self.frame_for(me, seq)
            try:
                sock.send_text(frame)
            except ChatError as exc:
                self.report("WS", "resend", 0, 0, exc)
                return  # the next reconnect resends what is still unacknowledged
            self.report("WS", "resend", 0, len(frame))

    def frame_for(self, me, seq):
        content = tracking.make_content(STATE.run_id, me.id, seq, self.scenario.message_bytes)
        if self.scenario.protocol == 2:
            return json.dumps(send_frame(content, tracking.marker(STATE.run_id, me.id, seq)))
        return json.dumps(room_frame(me.id, me.partner_id, content))

    def thread_since(self, me, after_id, name, partner_id=None):
        """Every message of the conversation of `me` with partner_id (default: its partner)
        after `after_id` (0: all of it, by page)."""
        messages, params = [], {"after_id": after_id} if after_id else {"page": 1}
        while True:
            started = time.perf_counter()
            try:
                page = self.api.thread(me.session, partner_id or me.partner_id, page_size=100, **params)
            except ChatError as exc:
                self.report("HTTP", name, (time.perf_counter() - started) * 1000, 0, exc)
                raise
            self.report("HTTP", name, (time.perf_counter() - started) * 1000)
            messages += page["results"]
            if not page["results"] or not page.get("next"):
                return messages
            params = {"after_id": page["results"][-1]["id"]} if after_id else {"page": params["page"] + 1}

    def check_store(self):
        """Runs with faults: which of this conversation's messages the server stored; what
        was neither echoed nor stored failed unacknowledged, what was echoed and is not
        stored is an acknowledged loss (tracker.reconcile)."""
        run_id = STATE.run_id
        try:
            messages = self.thread_since(self.participants[0], 0, "store check")
        except ChatError:
            return  # reported; what is outstanding is then counted lost
        self.report_store({tracking.parse_marker(m["content"], run_id) for m in messages})

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
        scenario, tracker = self.scenario, STATE.tracker
        interval = 1.0 / scenario.rate_per_user
        start = self._start_time()
        end = start + scenario.duration
        for p in self.participants:
            p.next_at = start + random.random() * interval  # spread senders over the interval
        participants = self.participants
        window = scenario.window
        resends = scenario.resends
        monotonic = time.monotonic
        while True:
            me = min(participants, key=_next_at)  # the first on ties
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
            frame = self.frame_for(me, seq)
            tracker.expect(me.id, seq, intended, self.key)
            if window:
                me.in_flight += 1
                if me.in_flight >= window:
                    me.can_send.clear()
            try:
                me.room.send_text(frame)
            except ChatError as exc:
                if not resends:  # protocol 2 with reconnects sends it again after the reconnect
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

