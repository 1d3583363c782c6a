"""CPU time of the group-commit writer per message, without sockets or a load generator.

    python -m bench.writer --batch 100 --batches 40

Stores `--batches` batches of `--batch` sends (50 conversations, both directions) with the
batcher's own `_write` in its writer thread, on a fresh SQLite file (WAL) in a temporary
STATE_DIR, with the settings of the environment (DEBUG=1 unless set, like `make run`),
and prints the writer thread's CPU time per message for three rounds. CPU time of that
thread is what it takes from the event loop through the GIL, and it is far less
disturbed by other work on a shared machine than a throughput figure. Used for the
writer's before/after in docs/benchmarks.md (issue 14); run it under `py-spy record
--threads -f raw -- python -m bench.writer ...` for a profile of the writer alone.
"""

import argparse
import os
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="sends per batch (a multiple of 50)")
    parser.add_argument("--batches", type=int, default=40, help="batches per round")
    args = parser.parse_args()
    os.environ.setdefault("DEBUG", "1")
    os.environ["STATE_DIR"] = tempfile.mkdtemp(prefix="bench-writer-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "habitto_server.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from habitto_chat.conversations import get_or_create_conversation
    from habitto_chat.realtime import batcher
    from habitto_chat.sends import SendRequest

    call_command("migrate", verbosity=0)
    users = [get_user_model().objects.create_user(f"writer{n}", password=None) for n in range(100)]
    pairs = [(a.pk, b.pk, get_or_create_conversation(a.pk, b.pk).id) for a, b in zip(users[::2], users[1::2])]

    def requests(batch_no):
        return [
            SendRequest(a, b, c, f"message {batch_no}-{n}") if n % 2 else SendRequest(b, a, c, f"message {batch_no}-{n}")
            for n, (a, b, c) in enumerate(pairs * (args.batch // len(pairs)))
        ]

    def timed(batch_no):
        batch = requests(batch_no)
        started = time.thread_time()
        batcher._write(batch)
        return time.thread_time() - started

    batcher._writer.submit(timed, -1).result()  # connection, caches
    messages = args.batch // len(pairs) * len(pairs) * args.batches
    rounds = []
    for round_no in range(3):
        cpu = sum(batcher._writer.submit(timed, round_no * args.batches + k).result() for k in range(args.batches))
        rounds.append(f"{cpu / messages * 1e6:.1f}")
    print(f"writer CPU per message (µs), {messages} messages a round, DEBUG={os.environ['DEBUG']}: {' '.join(rounds)}")
    batcher.close_writer_connection()


if __name__ == "__main__":
    main()
