"""Hold many idle authenticated inbox sockets open (the 10,000-socket benchmark).

    python -m bench.idle --accounts tokens.json --ws ws://127.0.0.1:8000 --count 10000
    python -m bench.idle ... --device       # /ws/v2/ device sockets instead of inbox sockets

Opens one inbox socket per account (`access` tokens in the accounts file), `--concurrency`
handshakes at a time, prints one JSON line when they are all open
({"opened", "failed", "seconds", "per_second"}), then holds them until stdin closes or
--hold seconds pass, and prints a last line with how many the server closed meanwhile.
asyncio `websockets` client: `--deflate` negotiates permessage-deflate (when the server
offers it), the default does not.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from habitto_client import device_url, inbox_url


async def open_one(url, deflate, limiter, sockets, failures, timeout):
    async with limiter:
        try:
            sock = await connect(url, compression="deflate" if deflate else None, open_timeout=timeout,
                                 ping_interval=None, max_queue=16)
            sockets.append(sock)
        except Exception as exc:  # counted and reported, never fatal
            failures.append(type(exc).__name__)


async def main_async(args):
    accounts = json.loads(Path(args.accounts).read_text())[args.skip : args.skip + args.count]
    limiter = asyncio.Semaphore(args.concurrency)
    sockets, failures = [], []
    started = time.monotonic()
    await asyncio.gather(*(
        open_one(device_url(args.ws, a["access"]) if args.device else inbox_url(args.ws, a["id"], a["access"]),
                 args.deflate, limiter, sockets, failures, args.timeout)
        for a in accounts
    ))
    seconds = time.monotonic() - started
    print(json.dumps({"opened": len(sockets), "failed": len(failures), "errors": sorted(set(failures))[:5],
                      "seconds": round(seconds, 2), "per_second": round(len(sockets) / seconds, 1),
                      "deflate": args.deflate, "device": args.device,
                      "negotiated_deflate": sum(1 for s in sockets[:50]
                                                if "permessage-deflate" in str(s.response.headers.get("Sec-WebSocket-Extensions", "")))}),
          flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait_for(stdin_closed, args.hold)
    except asyncio.TimeoutError:
        pass
    closed_by_server = sum(1 for s in sockets if s.close_code is not None)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    print(json.dumps({"closed_by_server_meanwhile": closed_by_server}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--skip", type=int, default=0, help="accounts to skip at the start of the file")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=600.0, help="hold at most this many seconds")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--device", action="store_true", help="open /ws/v2/ device sockets (protocol 2)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
