"""habitto_client: one small synchronous client for the Habitto chat protocol.

Shared by the load tester (loadtests/), the benchmarks (bench/), the on-call checks (ops/)
and the tests. The names below are the stable API; anything else in the package is
internal. Protocol: docs/protocol.md.

HTTP (standard library, a timeout on every call, environment proxies ignored)::

    from habitto_client import ChatHTTP
    api = ChatHTTP("http://127.0.0.1:8001", timeout=5)
    session = api.login("alice", "secret")      # Session(access, refresh, user_id, username)
    api.send_message(session, receiver=7, content="hi")   # -> message dict
    api.thread(session, 7, page_size=50)        # -> {"count","next","previous","results"}
    api.conversations(session)                  # -> page of conversations
    api.clear_conversation(session, 7)          # hides the conversation for this user
    api.register("bob", "pw", first_name="Bob") # POST /api/users/ -> user dict
    api.refresh(session); api.logout(session); api.me(session); api.mark_thread_read(session, 7)
    r = api.readyz()                            # Response(status, body, elapsed); never raises on 503
    api.request(method, path, body=None, token=None, params=None)  # any call -> Response
    api.users(session); api.my_profile(session); api.profiles_of_user(session, 7)
    api.notifications(session, is_read="false"); api.mark_notification_read(session, 3)
    api.thread_messages(session, 7)             # every message of the thread, newest first
    ChatHTTP(base, observer=fn)                 # fn(method, route, response|None, seconds, error|None)

The app's token handling (a 401 refreshes through /api/refresh/, then the call is retried)::

    app = AppHTTP("http://127.0.0.1:8001", timeout=5)   # a ChatHTTP that keeps the tokens
    app.login("alice", "secret"); app.conversations(app.session)   # app.session: the newest tokens

WebSockets (websocket-client, gevent-patchable; no Origin header, like the app)::

    from habitto_client import ChatSocket, room_url, inbox_url, ws_url_for
    url = room_url("ws://127.0.0.1:8000", session.user_id, 7, session.access)  # ids ordered
    ws_url_for("https://chat.example")          # -> "wss://chat.example" (same server, same port)
    with ChatSocket.open(url, timeout=5) as room:
        room.send_message(session.user_id, 7, "hi")       # or room.send_json({...})
        msg = read_room_frame(room.recv_json(timeout=5))  # RoomMessage(id, sender, ...)
    inbox = ChatSocket.open(inbox_url(ws_base, session.user_id, session.access))
    notifications_url(ws_base, "property", session.user_id, session.access)   # or "tenant"
    read_inbox_frame(inbox.recv_json(2))                  # InboxFrame(message_id, ...)
    inbox.wait_closed(2)   # -> close code, e.g. 4401 / 4403; also inbox.close_code afterwards

The device socket /ws/v2/ (protocol 2: one socket per device, every conversation)::

    from habitto_client import DeviceCursor, DeviceSocket, device_url
    cursor = DeviceCursor()                   # after_id / since / recent: survives reconnects
    dev = DeviceSocket.connect(ws_base, session.access, cursor, timeout=5)   # hello ... sync.done
    dev.send_message(7, "hi", client_id="c-1"); dev.expect("ack", client_id="c-1")
    dev.recv_event(5)                         # next frame; message.created duplicates dropped
    dev.edit(id, "new"); dev.delete(id); dev.read(id); dev.typing(7, "start"); dev.ping()
    DeviceSocket.connect(ws_base, session.access, cursor)   # resumes: replay, then sync.done
    v2_send_frame(to, content, client_id), v2_sync_frame(after_id, since, recent), ...  # frames.py

Errors (all subclasses of ChatError)::

    Timeout          connect, request, handshake or receive exceeded its timeout
    ConnectError     refused / reset / unknown host
    HTTPStatusError  unexpected HTTP status (.status, .body); AuthError for 401/403 and bad login
    HandshakeRejected the upgrade was answered with an HTTP status (.status)
    SocketClosed     the server closed the socket (.code: 4401, 4403, 4404, 4408, 4429 ...)
    ServerRejected   an {"error","code"} frame on a room socket (.code, .error)
    ProtocolError    a frame or body the protocol does not allow

Helpers: jwt_claims(token), jwt_user_id(token) (no verification), room_frame(sender,
receiver, content), send_frame(content, client_id) (protocol 2), read_room_frame(obj), read_inbox_frame(obj), is_error_frame(obj).
"""

from .errors import (
    AuthError,
    ChatError,
    ConnectError,
    HandshakeRejected,
    HTTPStatusError,
    ProtocolError,
    SocketClosed,
    Timeout,
)
from .app import AppHTTP
from .frames import (
    InboxFrame,
    RoomMessage,
    ServerRejected,
    is_error_frame,
    read_inbox_frame,
    read_room_frame,
    room_frame,
    send_frame,
    v2_delete_frame,
    v2_edit_frame,
    v2_ping_frame,
    v2_presence_query_frame,
    v2_read_frame,
    v2_send_frame,
    v2_sync_frame,
    v2_typing_frame,
)
from .device import DeviceCursor, DeviceSocket
from .http import ChatHTTP, Response, Session, route_name
from .sockets import ChatSocket, device_url, inbox_url, notifications_url, room_path, room_url, ws_url_for
from .tokens import jwt_claims, jwt_user_id

__all__ = [
    "AppHTTP", "AuthError", "ChatError", "ChatHTTP", "ChatSocket", "ConnectError", "DeviceCursor",
    "DeviceSocket", "HTTPStatusError",
    "HandshakeRejected", "InboxFrame", "ProtocolError", "Response", "RoomMessage",
    "ServerRejected", "Session", "SocketClosed", "Timeout", "inbox_url", "is_error_frame",
    "jwt_claims", "jwt_user_id", "notifications_url", "read_inbox_frame", "read_room_frame", "room_frame",
    "room_path", "room_url", "route_name", "send_frame", "device_url", "v2_delete_frame", "v2_edit_frame",
    "v2_ping_frame", "v2_presence_query_frame", "v2_read_frame", "v2_send_frame", "v2_sync_frame",
    "v2_typing_frame", "ws_url_for",
]
