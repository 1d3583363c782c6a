"""The `app` scenario: Locust users that behave like the shipped app (docs/loadtest.md).

A Locust user is one conversation, two phones on this process (every latency on one
clock, as in ConversationUser). Each phone has a kind drawn from the scenario's `phones`
mix (chatter, browser, idle) and goes through the app's screens in the order
loadtests/app_journey.py describes, with its REST calls made by habitto_client.AppHTTP (the
app's refresh on 401) and its sockets opened, dropped and reopened the app's way.

Stats rows besides ConversationUser's fan-out rows: one per REST route ("GET
/api/messages/thread/?other_user_id&page&page_size"; a 401 that the phone refreshed
past is "<route> [401]", not a failure), "WS connect inbox|property|room", "WS send",
"WS lost store" / "WS unacknowledged" (the store check at the end, as in runs with faults:
acknowledged yet not stored / never echoed and not stored), and the informative rows
"WS acknowledged stored" (acknowledged messages found in the thread at the end), "WS
excused <path>" (deliveries of a socket that closed or dropped first) and "WS dropped
before echo" (sends whose room socket closed or dropped before their echo came).
"""

import json
import random
import time

import gevent
from locust import task
from locust.exception import StopUser

from habitto_client import (
    AppHTTP, ChatError, HTTPStatusError, inbox_url, notifications_url, room_frame, room_url,
)

from . import app_journey as journey
from . import tracker as tracking
from .config import phone_kinds
from .state import STATE
from .users import ChatSocketUser, LoadTestFailure, inbox_handler

BROWSER_ACTIONS = ("read", "pull", "notifications")  # a browser's next screen, weighted by phones.browser_actions


class Phone:
    """One app user: its tokens, sockets, screens and call log."""

    def __init__(self, user, account, kind, rng):
        self.user = user
        self.scenario = user.scenario
        self.mix = self.scenario.phones
        self.account = account
        self.kind = kind
        self.rng = rng
        self.api = AppHTTP(STATE.http_base, timeout=self.scenario.connect_timeout, observer=self._observed)
        self.id = None
        self.partner = None
        self.conversation = None
        self.sockets = dict.fromkeys(("inbox", "property", "room"))
        self.connections = 0
        self.listed = {}  # counterpart id -> avatar URL (or None), as the chat list shows them
        self.online = True
        self.room_lost = False
        self.ended = False
        self.seq = 0
        self.refreshes = 0
        self.inbox_delay = journey.INBOX_FIRST_DELAY
        self.churn_at = self._next_churn(time.monotonic())
        self.calls = []  # [lane, call name, status, seconds since the phone started (when the call started)]
        self.started = time.monotonic()

    # -- the call log and the reports ---------------------------------------------------------
    def log(self, lane, name, status=None, at=None):
        """One call of the log; `at` (monotonic) when it started, default now."""
        self.calls.append([lane, name, status, round((at or time.monotonic()) - self.started, 3)])

    def _observed(self, method, route, resp, elapsed, error):
        status = resp.status if resp is not None else None
        self.log("screen", f"{method} {route}", status)
        ms = elapsed * 1000
        if error is None and status == 401 and route not in ("/api/login/", "/api/refresh/", "/api/token/refresh/"):
            self.user.report(method, f"{route} [401]", ms)  # the app refreshes and retries: not a failure
        elif error is not None or status >= 400:
            self.user.report(method, route, ms, 0, error or HTTPStatusError(status, resp.body))
        else:
            self.user.report(method, route, ms)

    # -- sockets ----------------------------------------------------------------------------------
    def _url(self, kind):
        token = self.api.session.access if self.api.session else None  # _tokenStorage.getAccessToken()
        if kind == "inbox":
            return inbox_url(STATE.ws_base, self.id, token)
        if kind == "property":
            return notifications_url(STATE.ws_base, "property", self.id, token)
        return room_url(STATE.ws_base, self.id, self.partner.id, token)

    def connect(self, kind, lane="screen"):
        self.connections += 1
        key = (self.id, kind, self.connections)  # a new order check per connection
        if kind == "inbox":
            on_frame = inbox_handler(self.id, key, self._listed)
        else:
            on_frame = self._room_frame(key) if kind == "room" else _ignore
        started = time.monotonic()
        try:
            sock = self.user.open_socket(self._url(kind), kind, on_frame, on_close=self._closed)
        except ChatError:
            self.log(lane, f"WS open {kind}", "failed", started)
            if kind != "room" and lane == "screen":
                gevent.spawn(self._reconnect, kind)  # the failure reaches onDone: the app schedules a reconnect
            return False
        self.sockets[kind] = sock
        self.log(lane, f"WS open {kind}", 101, started)
        if lane != "screen":
            STATE.reconnects.append((time.monotonic(), kind))  # the fault report counts reconnects
        return True

    def _closed(self, sock):
        """The server closed one of this phone's sockets: the app's onDone."""
        for kind, current in self.sockets.items():
            if current is sock:
                self._lost(kind)

    def drop(self, kind):
        """The network took this socket away (no close handshake)."""
        sock = self.sockets[kind]
        if sock is not None:
            sock.abort()
            self._lost(kind)

    def _lost(self, kind):
        self.sockets[kind] = None
        if kind == "room":
            self.room_lost = True  # conversation_page.dart: a snackbar, no reconnect
            dropped = STATE.tracker.drop_unacknowledged(self.conversation, self.id)
            self.user.report_count("dropped before echo", dropped)
            self._excuse(self.partner.id, "partner_room")
        elif kind == "inbox":
            self._excuse(self.id, "sender_inbox")
            self._excuse(self.partner.id, "partner_inbox")
            gevent.spawn(self._reconnect, "inbox")
        else:
            gevent.spawn(self._reconnect, "property")

    def _excuse(self, sender, path):
        self.user.report_count(f"excused {path}", STATE.tracker.excuse(self.conversation, sender, path))

    def _reconnect(self, kind):
        """chat_page.dart _scheduleInboxReconnect / _schedulePropertyNotifReconnect."""
        while True:
            gevent.sleep(self.inbox_delay if kind == "inbox" else journey.NOTIFICATION_RECONNECT_DELAY)
            if self.ended or self.sockets[kind] is not None:
                return  # the page is gone, or pull-to-refresh reopened it meanwhile
            if kind == "inbox":
                self.inbox_delay = min(self.inbox_delay * 2, journey.INBOX_MAX_DELAY)
            if self.online and self.connect(kind, lane=kind):
                return
            if not self.online:
                self.log(kind, f"WS open {kind}", "offline")

    # -- frames -----------------------------------------------------------------------------------
    def _room_frame(self, key):
        tracker, loads = STATE.tracker, json.loads

        def on_frame(text, now):
            obj = loads(text)
            sender = obj.get("sender")
            if sender is None:
                self.user.report("WS", "rejected" if "error" in obj else "stray room", 0, len(text),
                                 LoadTestFailure(f"{obj.get('code')}: {obj.get('error')}"))
                return
            path = "sender_echo" if sender == self.id else "partner_room"
            tracker.arrived(key, path, obj.get("content", ""), now)

        return on_frame

    def _listed(self, frame):
        """chat_page.dart: an inbox frame moves (or adds) the counterpart's tile to the top."""
        self.listed[frame.get("counterpart_id")] = frame.get("counterpart_profile_picture")

    # -- time: think, type, and (churn) lose the network -----------------------------------------
    def _next_churn(self, now):
        rate = self.scenario.churn / 60.0
        return now + self.rng.expovariate(rate) if rate > 0 else None

    def pause(self, seconds):
        """Sleep like a user reading or typing; the network may go away meanwhile (churn)."""
        end = min(time.monotonic() + seconds, self.deadline)
        while True:
            now = time.monotonic()
            if self.churn_at is not None and self.churn_at < end:
                gevent.sleep(max(0.0, self.churn_at - now))
                self.go_away()
                continue
            gevent.sleep(max(0.0, end - now))
            return

    def go_away(self):
        self.log("screen", "away")
        self.online = False
        for kind in ("room", "inbox", "property"):
            self.drop(kind)
        away = self.rng.expovariate(1.0 / self.scenario.churn_away) if self.scenario.churn_away > 0 else 0.0
        gevent.sleep(away)
        self.online = True
        self.churn_at = self._next_churn(time.monotonic())

    def think(self):
        self.pause(self.rng.uniform(*self.mix["think_s"]))

    # -- the screens (app_journey.py) ----------------------------------------------------------
    def log_in(self):
        session = self.api.login(self.account["username"], self.account["password"])
        self.id = session.user_id
        self.api.my_profile(session)  # splash_page.dart
        self.api.my_profile(self.api.session)  # home_page.dart

    def chat_tab(self):
        self.connect("inbox")
        self.connect("property")
        self._list(self.api.conversations(self.api.session))
        self.api.notifications(self.api.session, is_read="false")

    def _list(self, page):
        for row in page.get("results", []):
            counterpart = row.get("counterpart") or {}
            self.listed[counterpart.get("id")] = counterpart.get("profile_picture")

    def open_chat(self):
        other = self.partner.id
        if other in self.listed:  # its tile in the list: mark read, then the page
            self.api.mark_thread_read(self.api.session, other)
            avatar = self.listed[other]
        else:  # not in the list yet: the user list, then the page without an avatar
            self.api.users(self.api.session)
            avatar = None
        if not avatar:
            self.api.profiles_of_user(self.api.session, other)
        self.room_lost = False
        if not self.connect("room"):
            self.room_lost = True
        self.api.thread(self.api.session, other, page=1, page_size=journey.THREAD_PAGE_SIZE)

    def leave_chat(self):
        """dispose(): the room socket closed; echoes still on their way never arrive."""
        sock = self.sockets["room"]
        self.sockets["room"] = None
        if sock is not None:
            sock.close(timeout=0.5)
            self.user.report_count("dropped before echo",
                                   STATE.tracker.drop_unacknowledged(self.conversation, self.id))
            self._excuse(self.partner.id, "partner_room")
        self.log("screen", "WS close room")

    def send(self):
        """One message on the room socket; expected where sockets are open right now."""
        tracker, partner = STATE.tracker, self.partner
        paths = ["sender_echo"]
        paths += ["partner_room"] if partner.sockets["room"] is not None else []
        paths += ["sender_inbox"] if self.sockets["inbox"] is not None else []
        paths += ["partner_inbox"] if partner.sockets["inbox"] is not None else []
        seq = self.seq
        self.seq += 1
        content = tracking.make_content(STATE.run_id, self.id, seq, self.scenario.message_bytes)
        frame = json.dumps(room_frame(self.id, partner.id, content))
        started = time.monotonic()
        tracker.expect(self.id, seq, started, self.conversation, paths)
        self.log("screen", "WS send room")
        try:
            self.sockets["room"].send_text(frame)
        except ChatError as exc:
            tracker.forget(self.id, seq)
            self.user.report("WS", "send", (time.monotonic() - started) * 1000, 0, exc)
        else:
            self.user.report("WS", "send", (time.monotonic() - started) * 1000, len(frame))

    def pull_to_refresh(self):
        for kind in ("inbox", "property"):  # _loadMessages() reopens a socket that is down
            if self.sockets[kind] is None:
                self.connect(kind)
        self._list(self.api.conversations(self.api.session))
        self.api.notifications(self.api.session, is_read="false")

    def notifications_page(self):
        self.api.notifications(self.api.session, page=1, page_size=journey.NOTIFICATIONS_PAGE_SIZE)
        self.think()
        self.api.notifications(self.api.session, is_read="false")  # .then(_loadUnreadNotificationsCount)

    # -- the kinds ------------------------------------------------------------------------------
    def chatter(self):
        self.open_chat()
        low, high = self.mix["messages_per_visit"]
        for _ in range(self.rng.randint(low, high)):
            self.pause(self.rng.uniform(*self.mix["typing_s"]))
            if self.room_lost or time.monotonic() >= self.deadline:
                break
            self.send()
        self.think()  # reads the answer before leaving
        self.leave_chat()
        self.think()

    def browser(self):
        action = self.rng.choices(BROWSER_ACTIONS, self.mix["browser_actions"])[0]
        if action == "read" and self.partner.id in self.listed:
            self.open_chat()
            self.think()
            self.leave_chat()
        elif action == "notifications":
            self.notifications_page()
        else:
            self.pull_to_refresh()
        self.think()

    def idle(self):
        self.pause(self.deadline - time.monotonic())

    def run(self, deadline):
        """The phone's session until `deadline` (monotonic); REST failures are reported by the
        observer and end the screen they happened on, as an error snackbar would."""
        self.deadline = deadline
        step = getattr(self, self.kind)
        while time.monotonic() < deadline:
            try:
                step()
            except ChatError:
                if self.api.session is None:
                    self.user.report("HTTP", "logged out", 0, 0, LoadTestFailure("the refresh failed"))
                    break
                if self.sockets["room"] is not None:
                    self.leave_chat()
                self.think()
        self.refreshes = self.api.refreshes  # the session's, not the final check's


def _ignore(text, now):
    """The property-notification socket's frames: the load test publishes no notifications."""


class AppConversationUser(ChatSocketUser):
    """One conversation of the app scenario: two phones of this process (module docstring)."""

    _kinds = None

    def on_start(self):
        pair = STATE.take_pair()
        if pair is None:
            self.report("WS", "setup", 0, 0, LoadTestFailure("not enough provisioned accounts for the users"))
            raise StopUser()
        if AppConversationUser._kinds is None:
            AppConversationUser._kinds = phone_kinds(self.scenario.phones)
        rng = random.Random()
        self.phones = [Phone(self, account, next(AppConversationUser._kinds), rng) for account in pair]

    @task
    def run_conversation(self):
        a, b = self.phones
        try:
            try:
                for phone in self.phones:
                    phone.log_in()
                    phone.partner = b if phone is a else a
            except ChatError:
                raise StopUser() from None
            self.key = a.conversation = b.conversation = (a.id, b.id)
            deadline = time.monotonic() + self.scenario.duration
            greenlets = []
            for phone in self.phones:
                try:
                    phone.chat_tab()
                except ChatError:
                    pass  # reported by the observer; the tab shows an error, the sockets stay
                greenlets.append(gevent.spawn(phone.run, deadline))
            gevent.joinall(greenlets)
            for phone in self.phones:
                phone.ended = True
            self.drain()  # and check_store()
        finally:
            for phone in self.phones:
                phone.ended = True
                if self.scenario.call_log:
                    STATE.call_logs.append({"username": phone.account["username"], "kind": phone.kind,
                                            "refreshes": phone.refreshes, "calls": phone.calls})
            self.close_sockets()
            STATE.conversation_done(self.environment)
        self.idle_until_stopped()

    def check_store(self):
        """Every acknowledged message (its echo came back) must be stored, whatever dropped
        meanwhile: the thread read through the API with the first phone's newest tokens."""
        phone = self.phones[0]
        if phone.api.session is None:
            return
        phone.api.observer = None  # not a call of the app's journey
        try:
            messages = list(phone.api.thread_messages(phone.api.session, phone.partner.id))
        except ChatError as exc:
            self.report("HTTP", "store check", 0, 0, exc)
            return
        self.report_store({tracking.parse_marker(m["content"], STATE.run_id) for m in messages})
