"""Room-protocol flood, as in performance-notes.md: pairs of users on room sockets, each
user sending N messages as fast as it can; reports messages delivered to partners per
second and delivery latency. Used to pick the ASGI server (docs/realtime.md); the
release gate with percentiles per path is the Locust suite in loadtests/.

    python -m bench.flood --http http://127.0.0.1:8001 --ws ws://127.0.0.1:8000 \
        --users users.json --pairs 50 --messages 60
"""

import argparse
import asyncio
import json
import statistics
import time
import urllib.request

import websockets


def login(http, username, password):
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(http + "/api/login/", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]["access"]


async def run(args):
    users = json.load(open(args.users))[: args.pairs * 2]
    if len(users) < args.pairs * 2:
        raise SystemExit(f"need {args.pairs * 2} users, got {len(users)}")
    loop = asyncio.get_running_loop()
    tokens = await asyncio.gather(
        *(loop.run_in_executor(None, login, args.http, u["username"], u["password"]) for u in users)
    )
    sockets = []
    for i in range(0, len(users), 2):
        a, b = users[i]["id"], users[i + 1]["id"]
        low, high = sorted((a, b))
        for user, token, other in ((a, tokens[i], b), (b, tokens[i + 1], a)):
            ws = await websockets.connect(
                f"{args.ws}/ws/chat/{low}-{high}/?token={token}", max_size=2**20, compression=None
            )
            sockets.append((user, other, ws))
    latencies, delivered = [], 0
    expected = len(sockets) * args.messages
    done = asyncio.Event()

    async def reader(user, ws):
        nonlocal delivered
        seen = 0
        while seen < 2 * args.messages:  # the partner's messages and our own echoes
            frame = json.loads(await ws.recv())
            seen += 1
            if frame["sender"] != user:
                sent_at = float(frame["content"].split(" ", 1)[0])
                latencies.append(time.perf_counter() - sent_at)
                delivered += 1
                if delivered == expected:
                    done.set()

    async def writer(user, other, ws):
        for n in range(args.messages):
            await ws.send(json.dumps({"sender": user, "receiver": other, "content": f"{time.perf_counter()} {n}"}))

    readers = [asyncio.create_task(reader(u, ws)) for u, _, ws in sockets]
    started = time.perf_counter()
    await asyncio.gather(*(writer(u, o, ws) for u, o, ws in sockets))
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except asyncio.TimeoutError:
        pass
    elapsed = time.perf_counter() - started
    for task in readers:
        task.cancel()
    for _, _, ws in sockets:
        await ws.close()
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    result = {
        "sockets": len(sockets),
        "expected": expected,
        "delivered": delivered,
        "seconds": round(elapsed, 3),
        "delivered_per_s": round(delivered / elapsed, 1),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
    }
    print(json.dumps(result))
    return 0 if delivered == expected else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--users", required=True, help="JSON from manage.py create_loadtest_users")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=60)
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
