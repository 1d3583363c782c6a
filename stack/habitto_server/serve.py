"""Serve the chat backend (HTTP and WebSocket) on one or more ports from one process.

    python -m habitto_server.serve --host 127.0.0.1 --ports 8000,8001

uvicorn serves every port from the same event loop, so one process answers the old
app builds (HTTP on 8001, WebSockets on 8000) and the new ones (both on one port).
Why uvicorn and these options: docs/realtime.md.
"""

import argparse
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


def bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


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
    return parser


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

    args = build_parser(settings).parse_args(argv)
    gcwatch.log_long_pauses()
    gcwatch.freeze_long_lived(settings.GC_FREEZE_SECONDS, settings.GC_RELEASE_SECONDS)

    sockets = [bind(args.host, port) for port in args.ports]
    config = uvicorn.Config(
        "habitto_server.asgi:application",
        host=args.host,
        port=args.ports[0],
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
        ", ".join(f"http://{args.host}:{p}" for p in args.ports),
    )
    server.run(sockets=sockets)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
