"""Seed a benchmark database: one user with many conversations among many stored messages.

    STATE_DIR=... DEBUG=1 python -m bench.seed --messages 1000000 --partners 1000 \
        --others 2000 --output seed.json

Runs with the server's settings against a database the benchmark created (never a real
one). Users come from `manage.py create_loadtest_users` (run before, ids in --users);
conversations, participants and messages are written in bulk with raw executemany in
one transaction, consistent with what the chat's actions would have stored: the
participant rows point at the newest message, everything read, nothing cleared.

Layout: user U talks with every partner (100 messages each, except one big thread
that takes the remainder), and the other users talk in pairs (i, i+1) and (i, i+2)
with 200 messages each. Message ids are interleaved across conversations at random
(fixed seed), as real traffic would be.
"""

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

def plan(user_id, partner_ids, other_ids, total, per_partner=100, per_other=200):
    """[(low, high, count)] of conversations; the first is U's big thread."""
    others = []
    for i, a in enumerate(other_ids):
        for k in (1, 2):
            if i + k < len(other_ids):
                b = other_ids[i + k]
                others.append((min(a, b), max(a, b), per_other))
    small = [(min(user_id, p), max(user_id, p), per_partner) for p in partner_ids[1:]]
    rest = total - sum(c for *_, c in others) - sum(c for *_, c in small)
    if rest < per_partner:
        raise SystemExit(f"--messages {total} too small for this layout (big thread would get {rest})")
    big = (min(user_id, partner_ids[0]), max(user_id, partner_ids[0]), rest)
    return [big, *small, *others]


def _has_field(model, name):
    """Newer schemas keep a per-side message count (the thread page's `count`)."""
    return any(f.name == name for f in model._meta.get_fields())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", required=True, help="accounts JSON from create_loadtest_users")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=1000)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "habitto_server.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from habitto_chat.models import Conversation, Message, Participant

    accounts = json.loads(Path(args.users).read_text())
    ids = [a["id"] for a in accounts]
    user_id, partner_ids, other_ids = ids[0], ids[1 : 1 + args.partners], ids[1 + args.partners :]
    if len(partner_ids) < args.partners:
        raise SystemExit("not enough accounts for --partners")
    conversations = plan(user_id, partner_ids, other_ids, args.messages)
    started = time.monotonic()
    rng = random.Random(args.seed)
    order = [index for index, (*_, count) in enumerate(conversations) for _ in range(count)]
    rng.shuffle(order)
    base = datetime.now(timezone.utc) - timedelta(seconds=len(order) + 60)
    quote = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic():
        first_id = (Message.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        rows = Conversation.objects.bulk_create(
            [Conversation(user_low_id=low, user_high_id=high) for low, high, _ in conversations], batch_size=2000
        )
        conversation_ids = [c.pk for c in rows]  # RETURNING ids: SQLite 3.35+, PostgreSQL
        if None in conversation_ids:
            raise SystemExit("this database does not return ids from bulk inserts")
        newest = {}
        sql = "INSERT INTO {t} ({id}, {c}, {s}, {r}, {content}, {created}) VALUES (%s, %s, %s, %s, %s, %s)".format(
            t=quote(Message._meta.db_table), id=quote("id"), c=quote("conversation_id"), s=quote("sender_id"),
            r=quote("receiver_id"), content=quote("content"), created=quote("created_at"),
        )
        chunk, message_id = [], first_id
        with connection.cursor() as cursor:
            for position, index in enumerate(order):
                low, high, _ = conversations[index]
                sender, receiver = (low, high) if rng.random() < 0.5 else (high, low)
                created = adapt(base + timedelta(seconds=position))
                chunk.append((message_id, conversation_ids[index], sender, receiver,
                              f"benchmark message {message_id} with some ordinary chat text", created))
                newest[index] = message_id
                message_id += 1
                if len(chunk) >= 20_000:
                    cursor.executemany(sql, chunk)
                    chunk = []
            if chunk:
                cursor.executemany(sql, chunk)
        counted = {"visible_count": None} if _has_field(Participant, "visible_count") else {}
        Participant.objects.bulk_create(
            [
                Participant(conversation_id=conversation_ids[i], user_id=me, other_user_id=other,
                            last_message_id=newest[i], last_read_id=newest[i],
                            **({"visible_count": count} if counted else {}))
                for i, (low, high, count) in enumerate(conversations)
                for me, other in ((low, high), (high, low))
            ],
            batch_size=2000,
        )
    with connection.cursor() as cursor:
        if connection.vendor in ("sqlite", "postgresql"):
            cursor.execute("ANALYZE")
    seconds = time.monotonic() - started
    summary = {
        "user_id": user_id, "big_partner_id": partner_ids[0], "small_partner_id": partner_ids[-1],
        "conversations": len(conversations), "user_conversations": args.partners,
        "messages": len(order), "big_thread_messages": conversations[0][2], "seconds": round(seconds, 1),
    }
    Path(args.output).write_text(json.dumps(summary))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
