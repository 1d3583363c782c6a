"""Room-protocol flood: the throughput phase's client (and the one issue 14's figures came from).

    python -m bench.flood --ws ws://127.0.0.1:8000 --accounts tokens.json --pairs 50 --messages 600 [--inbox]
    python -m bench.flood ... --device        # protocol 2: one /ws/v2/ device socket per account

Pairs of accounts on room sockets (and, with --inbox, inbox sockets), every socket
sending its N messages as fast as the server echoes them, at most --window (64) awaiting
their echo: twice the server's SENDS_IN_FLIGHT, so the window does not cap the server,
but latency stays bounded (without one, a slow server's backlog grew past the 20 s ping
timeout and it closed sockets with 1011 mid-flood). One asyncio process with uvloop: the Locust users
(loadtests/) pace and time each message on a gevent loop that tops out near 4,000
closed-loop msgs/s on this machine, below what the server and the relay deliver.

Reports, as one JSON line: messages delivered to partners' room sockets per second
(first send to last delivery), latency from send to partner delivery, and the checks:
every message delivered once to the partner's room (and the echo to the sender's), in
each sender's order, and with --inbox once to each of the two inboxes.

With --device every account holds one /ws/v2/ socket instead (docs/protocol.md): `send`
frames with a client_id, the window released by the ack; each message must be acked once
and arrive as message.created once on the partner's device (delivered, in order) and once
on the sender's own. Accounts carry
"access" tokens (bench/mint_tokens.py); with --http and no token, accounts log in.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.request

import websockets


def login(http, username, password):
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(http + "/api/login/", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]["access"]


class Tally:
    """What arrived where, and what was wrong with it."""

    def __init__(self):
        self.delivered = self.echoes = self.inbox = 0
        self.own = 0  # --device: message.created of the sender's own messages on its device
        self.duplicated = self.out_of_order = self.stray = 0
        self.latencies = []
        self.last_delivery = 0.0
        self.closed = {}  # close code -> sockets the server closed during the flood

    def partner(self, sender_sent, last_seen, n):
        """A partner's message number n; last_seen: dict sender -> last n seen."""
        previous = last_seen.get(sender_sent, -1)
        if n == previous:
            self.duplicated += 1
        elif n < previous:
            self.out_of_order += 1
        last_seen[sender_sent] = max(previous, n)


async def run(args):
    accounts = json.load(open(args.accounts))[: args.pairs * 2]
    if len(accounts) < args.pairs * 2:
        raise SystemExit(f"need {args.pairs * 2} accounts, got {len(accounts)}")
    loop = asyncio.get_running_loop()
    tokens = await asyncio.gather(*(
        asyncio.sleep(0, a["access"]) if a.get("access") else loop.run_in_executor(None, login, args.http,
                                                                                     a["username"], a["password"])
        for a in accounts))
    options = {"max_size": 2**20, "compression": None, "ping_interval": None, "max_queue": None}
    if args.device:
        return await run_devices(args, accounts, tokens, options)
    rooms, inboxes = [], []
    for i in range(0, len(accounts), 2):
        a, b = accounts[i]["id"], accounts[i + 1]["id"]
        low, high = sorted((a, b))
        for user, token, other in ((a, tokens[i], b), (b, tokens[i + 1], a)):
            rooms.append((user, other, await websockets.connect(f"{args.ws}/ws/chat/{low}-{high}/?token={token}",
                                                                **options)))
            if args.inbox:
                inboxes.append(await websockets.connect(f"{args.ws}/ws/chat/inbox/{user}/?token={token}", **options))
    tally = Tally()
    expected = len(rooms) * args.messages
    done = asyncio.Event()
    started = 0.0

    def arrived():
        tally.last_delivery = time.perf_counter()
        total = tally.delivered + tally.echoes + tally.inbox
        if total >= expected * (2 + 2 * args.inbox):
            done.set()

    windows = {user: asyncio.Semaphore(args.window) for user, _, _ in rooms}

    async def room_reader(user, ws):
        try:
            await read_room(user, ws)
        except websockets.ConnectionClosed as closed:
            code = str(closed.rcvd.code if closed.rcvd else None)
            tally.closed[code] = tally.closed.get(code, 0) + 1

    async def read_room(user, ws):
        last_seen = {}
        async for raw in ws:
            frame = json.loads(raw)
            n_text, _, sent_at = frame.get("content", "").partition(" ")
            if "error" in frame or not n_text.isdigit():
                tally.stray += 1
                continue
            if frame["sender"] == user:
                tally.echoes += 1
                windows[user].release()
            else:
                tally.delivered += 1
                tally.latencies.append(time.perf_counter() - float(sent_at))
                tally.partner(frame["sender"], last_seen, int(n_text))
            arrived()

    async def inbox_reader(ws):
        async for _ in ws:
            tally.inbox += 1
            arrived()

    async def writer(user, other, ws):
        try:
            for n in range(args.messages):
                await windows[user].acquire()
                await ws.send(json.dumps({"sender": user, "receiver": other,
                                          "content": f"{n} {time.perf_counter()}"}))
        except websockets.ConnectionClosed:  # counted by the socket's reader
            pass

    readers = [room_reader(u, ws) for u, _, ws in rooms] + [inbox_reader(ws) for ws in inboxes]
    writers = [writer(u, o, ws) for u, o, ws in rooms]
    sockets = [ws for _, _, ws in rooms] + inboxes
    elapsed = await flood_until_done(readers, writers, sockets, done, tally, args.timeout)
    inbox_expected = 2 * expected if args.inbox else 0
    return report(tally, expected, elapsed, sockets=len(rooms) + len(inboxes), inbox_frames=tally.inbox,
                  inbox_expected=inbox_expected, passed=tally.echoes == expected and tally.inbox == inbox_expected)


async def run_devices(args, accounts, tokens, options):
    """The flood on /ws/v2/ device sockets, one per account (see the module docstring)."""
    devices = []
    for i in range(0, len(accounts), 2):
        a, b = accounts[i]["id"], accounts[i + 1]["id"]
        for user, token, other in ((a, tokens[i], b), (b, tokens[i + 1], a)):
            ws = await websockets.connect(f"{args.ws}/ws/v2/?token={token}", **options)
            async for raw in ws:  # hello ... sync.done: the socket is live
                if json.loads(raw).get("type") == "sync.done":
                    break
            devices.append((user, other, ws))
    tally = Tally()
    expected = len(devices) * args.messages
    done = asyncio.Event()
    windows = {user: asyncio.Semaphore(args.window) for user, _, _ in devices}

    def arrived():
        tally.last_delivery = time.perf_counter()
        if tally.delivered + tally.echoes + tally.own >= 3 * expected:
            done.set()

    async def reader(user, ws):
        last_seen, acked = {}, set()
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ack":
                    if frame["client_id"] in acked:
                        tally.duplicated += 1
                        continue
                    acked.add(frame["client_id"])
                    tally.echoes += 1
                    windows[user].release()
                elif kind == "message.created":
                    message = frame["message"]
                    n_text, _, sent_at = message["content"].partition(" ")
                    if not n_text.isdigit():
                        tally.stray += 1
                        continue
                    if message["sender"] == user:
                        tally.own += 1
                    else:
                        tally.delivered += 1
                        tally.latencies.append(time.perf_counter() - float(sent_at))
                        tally.partner(message["sender"], last_seen, int(n_text))
                elif kind == "error":
                    tally.stray += 1
                    continue
                else:
                    continue  # presence, pong
                arrived()
        except websockets.ConnectionClosed as closed:
            code = str(closed.rcvd.code if closed.rcvd else None)
            tally.closed[code] = tally.closed.get(code, 0) + 1

    async def writer(user, other, ws):
        try:
            for n in range(args.messages):
                await windows[user].acquire()
                await ws.send(json.dumps({"type": "send", "to": other, "content": f"{n} {time.perf_counter()}",
                                          "client_id": f"{user}-{n}"}))
        except websockets.ConnectionClosed:  # counted by the socket's reader
            pass

    readers = [reader(u, ws) for u, _, ws in devices]
    writers = [writer(u, o, ws) for u, o, ws in devices]
    elapsed = await flood_until_done(readers, writers, [ws for _, _, ws in devices], done, tally, args.timeout)
    return report(tally, expected, elapsed, sockets=len(devices), own_frames=tally.own,
                  passed=tally.own == expected and tally.echoes == expected)


async def flood_until_done(readers, writers, sockets, done, tally, timeout):
    """Run the readers while the writers send everything, until `done` (every frame
    counted) or the timeout; close the sockets. Seconds from the first send to the last
    delivery."""
    reading = [asyncio.create_task(reader) for reader in readers]
    started = time.perf_counter()
    await asyncio.gather(*writers)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    elapsed = max(tally.last_delivery - started, 1e-9)
    for task in reading:
        task.cancel()
    await asyncio.gather(*reading, return_exceptions=True)
    for ws in sockets:
        await ws.close()
    return elapsed


def report(tally, expected, elapsed, sockets, passed, **extra):
    """Print the flood's JSON line; the exit code."""
    latencies = sorted(tally.latencies)

    def pct(q):
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else None

    result = {
        "sockets": sockets, "sent": expected, "delivered": tally.delivered, "echoes": tally.echoes, **extra,
        "seconds": round(elapsed, 3), "delivered_per_s": round(tally.delivered / elapsed, 1),
        "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "lost": expected - tally.delivered, "duplicated": tally.duplicated, "out_of_order": tally.out_of_order,
        "stray": tally.stray, "closed_by_server": tally.closed,
    }
    result["passed"] = (passed and result["lost"] == 0 and not tally.duplicated and not tally.out_of_order
                        and not tally.stray and not tally.closed)
    print(json.dumps(result), flush=True)
    return 0 if result["passed"] else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", required=True)
    parser.add_argument("--accounts", required=True, help="JSON accounts with id and access (or username/password)")
    parser.add_argument("--http", help="where accounts without an access token log in")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--messages", type=int, default=600, help="messages per socket")
    parser.add_argument("--inbox", action="store_true", help="every account also holds its inbox socket")
    parser.add_argument("--device", action="store_true", help="one /ws/v2/ device socket per account instead")
    parser.add_argument("--window", type=int, default=64, help="messages per socket awaiting their echo")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the last delivery")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
