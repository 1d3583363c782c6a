"""The WebSocket half of the client: websocket-client (gevent-patchable) with timeouts."""

import json
import socket
import struct
import time
import urllib.parse

import websocket

from .errors import ChatError, ConnectError, HandshakeRejected, ProtocolError, SocketClosed, Timeout
from .frames import room_frame

DEFAULT_TIMEOUT = 5.0


def _ws_base(ws_base):
    return ws_base.rstrip("/")


def ws_url_for(http_url):
    """The WebSocket base URL of a server's HTTP base URL (one port answers both):
    http:// -> ws://, https:// -> wss://; any other URL is returned unchanged."""
    scheme, separator, rest = http_url.partition("://")
    if separator and scheme in ("http", "https"):
        return scheme.replace("http", "ws", 1) + separator + rest
    return http_url


def room_path(a, b):
    """/ws/chat/<low>-<high>/ with the two ids ordered numerically (9 and 10 -> 9-10)."""
    low, high = sorted((int(a), int(b)))
    return f"/ws/chat/{low}-{high}/"


def room_url(ws_base, a, b, token=None):
    """The room socket of users a and b, token in the query string as the app sends it."""
    return _ws_base(ws_base) + room_path(a, b) + _token_query(token)


def inbox_url(ws_base, user_id, token=None, alias=False):
    """The inbox socket of user_id (alias=True: the older /ws/notifications/<id>/ path)."""
    path = f"/ws/notifications/{int(user_id)}/" if alias else f"/ws/chat/inbox/{int(user_id)}/"
    return _ws_base(ws_base) + path + _token_query(token)


def notifications_url(ws_base, kind, user_id, token=None):
    """A notification socket of user_id: kind "property" or "tenant" (legacy frames only)."""
    if kind not in ("property", "tenant"):
        raise ValueError(f"no {kind!r} notification socket")
    return _ws_base(ws_base) + f"/ws/{kind}-notifications/{int(user_id)}/" + _token_query(token)


def device_url(ws_base, token=None, after_id=None, since=None, recent=()):
    """The device socket /ws/v2/ (protocol 2, every conversation of the user). after_id,
    since and recent resume in the query, the same as a sync frame right after opening."""
    query = {} if token is None else {"token": token}
    if after_id is not None:
        query["after_id"] = int(after_id)
        if since:
            query["since"] = since
        if recent:
            query["recent"] = ",".join(str(int(i)) for i in recent)
    return _ws_base(ws_base) + "/ws/v2/" + ("?" + urllib.parse.urlencode(query) if query else "")


def _token_query(token):
    return "" if token is None else "?" + urllib.parse.urlencode({"token": token})


def _close_code(frame):
    data = frame.data if frame is not None else b""
    if len(data) >= 2:
        code = struct.unpack("!H", data[:2])[0]
        return code, data[2:].decode("utf-8", errors="replace")
    return None, ""


class ChatSocket:
    """One open WebSocket. Use ChatSocket.open(url, timeout); also a context manager."""

    def __init__(self, ws, url, timeout):
        self._ws = ws
        self.url = url
        self.timeout = timeout
        self.close_code = None  # the server's close code once it closed the socket
        self.close_reason = ""
        self.closed = False
        self.closed_by_client = False  # close() or abort() was called: this side ended it

    @classmethod
    def open(cls, url, timeout=DEFAULT_TIMEOUT, origin=None, headers=None, subprotocols=None):
        """Connect and finish the handshake within `timeout` seconds.

        Like the mobile app, no Origin header is sent unless `origin` is given.
        Raises Timeout, ConnectError, HandshakeRejected(status).
        """
        options = {"skip_utf8_validation": True, "enable_multithread": True}
        if origin is None:
            options["suppress_origin"] = True
        else:
            options["origin"] = origin
        if headers:
            options["header"] = [f"{k}: {v}" for k, v in dict(headers).items()]
        if subprotocols:
            options["subprotocols"] = list(subprotocols)
        try:
            ws = websocket.create_connection(url, timeout=timeout, **options)
        except websocket.WebSocketBadStatusException as exc:
            raise HandshakeRejected(exc.status_code, exc.resp_body or b"") from None
        except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
            raise Timeout(f"WebSocket handshake with {_redact(url)}: no answer within {timeout:g} s") from None
        except websocket.WebSocketAddressException as exc:
            raise ConnectError(f"{_redact(url)}: {exc}") from None
        except websocket.WebSocketException as exc:
            raise ChatError(f"WebSocket handshake with {_redact(url)} failed: {exc}") from None
        except OSError as exc:
            raise ConnectError(f"{_redact(url)}: {exc}") from None
        return cls(ws, url, timeout)

    @property
    def subprotocol(self):
        return self._ws.getsubprotocol()

    # -- sending -------------------------------------------------------------------
    def send_text(self, text):
        self._send(text, websocket.ABNF.OPCODE_TEXT)

    def send_binary(self, data):
        """A binary frame: the chat protocol has none, the server answers with an error frame."""
        self._send(data, websocket.ABNF.OPCODE_BINARY)

    def _send(self, payload, opcode):
        if self.closed:
            raise SocketClosed(self.close_code, self.close_reason)
        try:
            self._ws.send(payload, opcode)
        except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
            raise Timeout("send did not complete within the socket timeout") from None
        except (websocket.WebSocketConnectionClosedException, OSError) as exc:
            self._mark_closed()
            raise SocketClosed(self.close_code, str(exc)) from None

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_message(self, sender, receiver, content):
        """Send the legacy room frame."""
        self.send_json(room_frame(sender, receiver, content))

    # -- receiving -------------------------------------------------------------------
    def recv_text(self, timeout=None):
        """The next text frame; raises Timeout, SocketClosed (close_code set) or ProtocolError."""
        if self.closed:
            raise SocketClosed(self.close_code, self.close_reason)
        self._ws.settimeout(self.timeout if timeout is None else timeout)
        try:
            opcode, frame = self._ws.recv_data_frame()
        except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
            raise Timeout(f"no frame within {self.timeout if timeout is None else timeout:g} s") from None
        except (websocket.WebSocketConnectionClosedException, OSError) as exc:
            self._mark_closed()
            raise SocketClosed(self.close_code, str(exc)) from None
        except websocket.WebSocketException as exc:
            self._mark_closed()
            raise ProtocolError(str(exc)) from None
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return frame.data.decode("utf-8") if isinstance(frame.data, bytes) else frame.data
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.close_code, self.close_reason = _close_code(frame)
            self._mark_closed()
            raise SocketClosed(self.close_code, self.close_reason)
        raise ProtocolError(f"unexpected frame opcode {opcode}")

    def recv_json(self, timeout=None):
        """The next frame parsed as a JSON object (timeout in seconds, default the open timeout)."""
        text = self.recv_text(timeout)
        try:
            obj = json.loads(text)
        except ValueError:
            raise ProtocolError(f"not JSON: {text[:200]!r}") from None
        if not isinstance(obj, dict):
            raise ProtocolError(f"not a JSON object: {text[:200]!r}")
        return obj

    def wait_closed(self, timeout=None):
        """Read (and drop) frames until the server closes; returns the close code. Raises Timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"socket still open after {timeout:g} s")
            try:
                self.recv_text(left)
            except SocketClosed:
                return self.close_code
            except ProtocolError:
                continue

    # -- closing -----------------------------------------------------------------------
    def close(self, code=1000, timeout=1.0):
        """Close politely (waits up to `timeout` for the server's close frame)."""
        self.closed_by_client = True
        if self.closed:
            return
        try:
            self._ws.close(status=code, timeout=timeout)
        except Exception:  # closing is best effort
            pass
        frame = getattr(self._ws, "close_frame", None)
        if frame is not None and self.close_code is None:
            self.close_code, self.close_reason = _close_code(frame)
        self._mark_closed()

    def abort(self):
        """Drop the connection without a close handshake (wakes a blocked receiver)."""
        self.closed_by_client = True
        try:
            self._ws.abort()
        finally:
            self._ws.shutdown()
            self.closed = True

    def _mark_closed(self):
        self.closed = True
        try:
            self._ws.shutdown()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = f"closed {self.close_code}" if self.closed else "open"
        return f"<ChatSocket {_redact(self.url)} {state}>"


def _redact(url):
    """The URL without its token (tokens never appear in errors or logs)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    query = urllib.parse.urlencode(
        [(k, "***" if k == "token" else v) for k, v in urllib.parse.parse_qsl(parts.query)]
    )
    return urllib.parse.urlunsplit(parts._replace(query=query))
