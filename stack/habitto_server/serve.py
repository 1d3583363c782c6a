"""Serve the chat backend (HTTP and WebSocket) on one or more ports from one process.

    python -m habitto_server.serve --host 127.0.0.1 --ports 8000,8001
    python -m habitto_server.serve --port-base 18100 --port-count 3 --port-file var/port

The second form is one replica of several (the scaled Compose stack, docs/docker.md): it
serves the first free port of the range and says which in the port file.

uvicorn serves every port from the same event loop, so one process answers the old
app builds (HTTP on 8001, WebSockets on 8000) and the new ones (both on one port).
Why uvicorn and these options: docs/realtime.md.
"""

import argparse
import contextlib
import errno
import logging
import os
import socket
import sys

from habitto_chat import parsing


def parse_ports(text):
    try:
        return parsing.parse_ports(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def listen(host, port):
    """A listening socket on host:port (OSError when it cannot be had), inheritable so
    uvicorn can serve it as it is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Linux: SO_REUSEADDR lets a restarted server take its port back from TIME_WAIT, but
    # still refuses a port another socket listens on: two processes may both bind() one
    # port, then the second listen() fails with EADDRINUSE (so both calls are tried here).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind(host, port):
    try:
        return listen(host, port)
    except OSError as exc:
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def bind_first_free(host, first, count):
    """The first port of first .. first+count-1 that can be had, bound and listening.
    bind() itself is the test, so replicas starting together never pick the same port
    (no check-then-bind race), and a restarted replica takes back the port it freed."""
    for port in range(first, first + count):
        try:
            return listen(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    raise SystemExit(f"cannot listen on {host}: every port of {first}-{first + count - 1} is in use")


def write_port_file(path, port):
    """The bound port for the container's health check; written whole (rename) so a reader
    never sees half of it."""
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        out.write(f"{port}\n")
    os.replace(partial, path)


def build_parser(settings):
    """Options default to the settings, which read HOST, PORTS, WS_IMPL and
    WS_PER_MESSAGE_DEFLATE from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.SERVE_HOST)
    parser.add_argument("--ports", type=parse_ports, default=settings.SERVE_PORTS)
    parser.add_argument(
        "--ws", default=settings.WS_IMPL, choices=settings.WS_IMPLEMENTATIONS, help="uvicorn WebSocket implementation"
    )
    parser.add_argument(
        "--per-message-deflate",
        action="store_true",
        default=settings.WS_PER_MESSAGE_DEFLATE,
        help="offer permessage-deflate (costs memory per socket, see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--port-base", type=int, default=settings.SERVE_PORT_BASE,
        help="serve ONE port instead of --ports: the first free one of BASE .. BASE+COUNT-1",
    )
    parser.add_argument("--port-count", type=int, default=settings.SERVE_PORT_COUNT)
    parser.add_argument("--port-file", default=settings.SERVE_PORT_FILE, help="write the bound port here")
    return parser


def open_sockets(parser, args):
    """The listening sockets: one per --ports entry, or the first free of the range."""
    if not args.port_base:
        return [bind(args.host, port) for port in args.ports]
    if args.port_count < 1 or not 0 < args.port_base <= 65536 - args.port_count:
        parser.error(f"--port-base {args.port_base} --port-count {args.port_count} is not a range of TCP ports")
    return [bind_first_free(args.host, args.port_base, args.port_count)]


def main(argv=None):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "habitto_server.settings")
    import django

    # Settings first: they refuse to start with an unsafe production config, and they
    # hold the defaults of the options below. setup() applies LOGGING, including the
    # token redaction filter.
    django.setup()
    import uvicorn
    from django.conf import settings

    from habitto_server import gcwatch

    parser = build_parser(settings)
    args = parser.parse_args(argv)
    gcwatch.log_long_pauses()
    gcwatch.freeze_long_lived(settings.GC_FREEZE_SECONDS, settings.GC_RELEASE_SECONDS)

    if args.port_file:  # a file left by the previous run must not vouch for a port meanwhile
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.port_file)
    sockets = open_sockets(parser, args)
    ports = [sock.getsockname()[1] for sock in sockets]
    config = uvicorn.Config(
        "habitto_server.asgi:application",
        host=args.host,
        port=ports[0],
        loop="uvloop",
        http="httptools",
        ws=args.ws,
        ws_max_size=settings.HABITTO_CHAT["MAX_FRAME_BYTES"],
        ws_per_message_deflate=args.per_message_deflate,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        log_config=None,
        access_log=settings.ACCESS_LOG,
        proxy_headers=True,
        forwarded_allow_ips=settings.FORWARDED_ALLOW_IPS,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    logging.getLogger("habitto_server").info(
        "serving HTTP and WebSocket on %s",
        ", ".join(f"http://{args.host}:{p}" for p in ports),
    )
    if args.port_file:
        write_port_file(args.port_file, ports[0])
    server.run(sockets=sockets)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
