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

DEFAULT_PORTS = "8000,8001"


def parse_ports(text):
    ports = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise argparse.ArgumentTypeError(f"not a TCP port: {item!r}")
        ports.append(int(item))
    if not ports:
        raise argparse.ArgumentTypeError("no port given")
    return ports


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


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument(
        "--ports", type=parse_ports, default=parse_ports(os.environ.get("PORTS", DEFAULT_PORTS))
    )
    parser.add_argument(
        "--ws",
        default=os.environ.get("WS_IMPL", "websockets"),
        choices=["websockets", "websockets-sansio", "wsproto"],
        help="uvicorn WebSocket implementation",
    )
    parser.add_argument(
        "--per-message-deflate",
        action="store_true",
        default=os.environ.get("WS_PER_MESSAGE_DEFLATE", "").lower() in {"1", "true", "yes"},
        help="offer permessage-deflate (costs memory per socket, see docs/benchmarks.md)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "habitto_server.settings")
    import django

    django.setup()  # applies LOGGING, including the token redaction filter
    import uvicorn
    from django.conf import settings

    from habitto_server import gcwatch

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
        access_log=os.environ.get("ACCESS_LOG", "1") != "0",
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
