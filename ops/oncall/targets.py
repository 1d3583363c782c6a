"""Where the checks run: this machine, or an SSH host whose ports are reached through tunnels.

A target answers three questions for the checks:
- `tcp(port, host)`: does a TCP connect to that port succeed (on the target itself)?
- `address(port, host)`: where to connect locally to reach that port (the port itself on
  this machine; a local listener tunnelled through the SSH connection for an SSH host);
- `connection`: the Fabric Connection (SSH hosts only), for the Docker check.

Every network step has a timeout: TCP connects and SSH channel opens use the connect
timeout, the SSH login the ssh timeout.
"""

import contextlib
import socket
import threading
import time

from .config import LOCAL, is_local

LOOPBACK = "127.0.0.1"


class TargetUnavailable(Exception):
    """The host could not be reached or logged into; its checks are UNKNOWN."""


class PortUnreachable(Exception):
    """A TCP connect to a port failed (refused, timed out, reset)."""

    def __init__(self, text, timed_out=False):
        super().__init__(text)
        self.timed_out = timed_out


class LocalTarget:
    """This machine: ports are reached directly on 127.0.0.1."""

    remote = False

    def __init__(self, name=LOCAL):
        self.name = name
        self.connection = None

    def open(self):
        return self

    def close(self):
        pass

    def tcp(self, port, timeout, host=LOOPBACK):
        """Connect and disconnect; returns seconds taken, raises PortUnreachable."""
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except (socket.timeout, TimeoutError):
            raise PortUnreachable(f"no TCP answer within {timeout:g} s", timed_out=True) from None
        except OSError as exc:
            raise PortUnreachable(_os_error_text(exc)) from None
        return time.monotonic() - started

    def address(self, port, host=LOOPBACK):
        return host, port

    def describe(self, port, host=LOOPBACK):
        return f"{host}:{port}"


class SSHTarget:
    """An SSH host; `address()` opens (once per port) a forward_local tunnel to it."""

    remote = True

    def __init__(self, name, fabric_config, ssh_timeout, channel_timeout):
        self.name = name
        self.fabric_config = fabric_config
        self.ssh_timeout = ssh_timeout
        self.channel_timeout = channel_timeout
        self.connection = None
        self._tunnels = {}
        self._stack = contextlib.ExitStack()

    def open(self):
        from fabric import Connection

        connect_kwargs = dict(_plain(self.fabric_config.get("connect_kwargs") or {}))
        # `fab --connect-timeout N` lands in connect_kwargs; Connection wants it separately.
        connect_timeout = float(connect_kwargs.pop("timeout", None) or self.ssh_timeout)
        # A port that accepts but never speaks SSH must not hold us longer than that either.
        connect_kwargs.setdefault("banner_timeout", connect_timeout)
        connect_kwargs.setdefault("auth_timeout", connect_timeout)
        connect_kwargs.setdefault("channel_timeout", connect_timeout)
        try:
            self.connection = Connection(
                self.name,
                config=self.fabric_config,
                connect_timeout=connect_timeout,
                connect_kwargs=connect_kwargs,
            )
            self.connection.open()
        except Exception as exc:  # paramiko/socket raise many kinds; all mean "cannot log in"
            self.close()
            raise TargetUnavailable(_ssh_error_text(self.name, exc, connect_timeout)) from None
        transport = self.connection.transport
        transport.set_keepalive(15)
        # Channel opens (tunnels, exec) time out like TCP connects, not after paramiko's hour.
        transport.channel_timeout = self.channel_timeout
        return self

    def close(self):
        try:
            self._stack.close()
        except Exception:  # a tunnel thread's error at teardown must not hide the results
            pass
        self._tunnels.clear()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()

    def tcp(self, port, timeout, host=LOOPBACK):
        """A direct-tcpip channel: the SSH server itself connects to host:port."""
        from paramiko import ChannelException, SSHException

        transport = self.connection.transport
        if transport is None or not transport.is_active():
            raise PortUnreachable(f"the SSH connection to {self.name} dropped")
        started = time.monotonic()
        try:
            channel = self._open_direct(transport, host, port, timeout)
        except ChannelException as exc:
            text = exc.text or "connect failed"
            if "refused" in text.lower() or text.lower() == "connect failed":
                text = "connection refused"
            raise PortUnreachable(text) from None
        except SSHException as exc:
            if "timeout" in str(exc).lower():
                raise PortUnreachable(f"no TCP answer within {timeout:g} s", timed_out=True) from None
            raise PortUnreachable(f"SSH channel failed: {exc}") from None
        elapsed = time.monotonic() - started
        channel.close()
        return elapsed

    @staticmethod
    def _open_direct(transport, host, port, timeout):
        """One direct-tcpip channel. paramiko keeps one refusal reason per transport: with
        the tunnels' channels opening beside this one, a refusal can come back as a bare
        "Unable to open channel." without its reason; asking once more gets the reason."""
        from paramiko import SSHException

        for attempt in (1, 2):
            try:
                return transport.open_channel("direct-tcpip", (host, port), (LOOPBACK, 0), timeout=timeout)
            except SSHException as exc:
                if attempt == 2 or "unable to open channel" not in str(exc).lower():
                    raise

    def address(self, port, host=LOOPBACK):
        """A local port that forwards to host:port as seen from the SSH host."""
        key = (host, port)
        if key not in self._tunnels:
            forwarder = Forwarder(self.connection.transport, host, port, self.channel_timeout)
            self._stack.callback(forwarder.close)
            self._tunnels[key] = forwarder.port
        return LOOPBACK, self._tunnels[key]

    def describe(self, port, host=LOOPBACK):
        return f"{host}:{port} on {self.name}"


def make_target(name, fabric_config, cfg, budget):
    if is_local(name):
        return LocalTarget(name)
    return SSHTarget(name, fabric_config, min(cfg.timeout("ssh"), budget), cfg.timeout("connect"))


# -- helpers -------------------------------------------------------------------------------


def _plain(value):
    if hasattr(value, "keys"):
        return {k: value[k] for k in value.keys()}
    return dict(value)


class Forwarder:
    """A local listener whose connections are tunnelled to host:port through SSH.

    Like Fabric's Connection.forward_local (and reusing its per-connection Tunnel pump),
    but made for checks that must never hang: the listener is bound before the first use
    (forward_local binds in its thread, so an immediate connect can be refused), each
    channel open has a timeout (paramiko's default is an hour) and a failed open closes
    the local connection at once instead of leaving the client waiting.
    """

    def __init__(self, transport, host, port, timeout):
        self.transport = transport
        self.remote = (host, port)
        self.timeout = timeout
        self.finished = threading.Event()
        self.tunnels = []
        self.listener = socket.socket()
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name=f"oncall-forward-{port}", daemon=True)
        self.thread.start()

    def _serve(self):
        from fabric.tunnels import Tunnel

        while not self.finished.is_set():
            try:
                sock, peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                channel = self.transport.open_channel("direct-tcpip", self.remote, peer, timeout=self.timeout)
            except Exception:  # refused or timed out on the far side: the client sees a reset
                sock.close()
                continue
            tunnel = Tunnel(channel=channel, sock=sock, finished=threading.Event())
            tunnel.daemon = True
            tunnel.start()
            self.tunnels.append(tunnel)

    def close(self):
        self.finished.set()
        self.thread.join(1.0)
        self.listener.close()
        for tunnel in self.tunnels:
            tunnel.finished.set()
        for tunnel in self.tunnels:
            tunnel.join(1.5)  # a Tunnel notices `finished` within its 1 s select


def _os_error_text(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return exc.strerror or str(exc) or type(exc).__name__


def _ssh_error_text(name, exc, timeout):
    import paramiko

    kind = type(exc).__name__
    if isinstance(exc, (socket.timeout, TimeoutError)):
        detail = f"no answer within {timeout:g} s"
    elif isinstance(exc, paramiko.AuthenticationException):
        detail = f"authentication failed ({exc})"
    elif isinstance(exc, paramiko.BadHostKeyException):
        detail = "host key does not match known_hosts (possible impersonation)"
    elif isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        detail = "connection refused (no SSH server on that port)"
    elif isinstance(exc, socket.gaierror):
        detail = f"unknown host name ({exc.strerror})"
    elif isinstance(exc, FileNotFoundError):
        detail = f"SSH key file not found: {exc.filename}"
    elif isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
        detail = f"no SSH banner within {timeout:g} s"
    else:
        detail = f"{kind}: {exc}"
    return f"cannot reach SSH host {name}: {detail}"
