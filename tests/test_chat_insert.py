"""The group commit's insert path (issue 14): one multi-row INSERT ... RETURNING per chunk
built from Message's metadata, plain rows (message_store.StoredMessage) instead of model
instances, and the writer thread's statements kept out of DEBUG's query log (quietsql).

On SQLite and PostgreSQL (Makefile DB_TESTS): ids increase in send order per
conversation and name the right rows, client_id repeats inside and across batches,
a poison send fails alone, batches beyond SQLite's variable limit, two conversations
written at once.
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from habitto_chat import actions, events, message_store, wire
from habitto_chat.conversations import get_or_create_conversation, participant
from habitto_chat.errors import ChatError, Conflict, StoreFailed
from habitto_chat.models import Conversation, Message, Participant
from habitto_chat.realtime import batcher as batcher_module
from habitto_chat.sends import SendRequest
from habitto_chat.users import UserCard


@pytest.fixture
def published(monkeypatch):
    """Every published batch of events, in order (one list per publish)."""
    batches = []
    monkeypatch.setattr(events, "_sinks", [*events._sinks, batches.append])
    return batches


def _two_conversations(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    return alice, bob, carol, get_or_create_conversation(alice.pk, bob.pk).id, get_or_create_conversation(carol.pk, bob.pk).id


def _interleaved(alice, bob, carol, ab, cb, count, client_ids=False):
    """`count` sends alternating between alice->bob and carol->bob, contents unique."""
    return [
        SendRequest(alice.pk, bob.pk, ab, f"a{n}", f"ka{n}" if client_ids else None)
        if n % 2 == 0
        else SendRequest(carol.pk, bob.pk, cb, f"c{n}", f"kc{n}" if client_ids else None)
        for n in range(count)
    ]


def _assert_stored_as_returned(results):
    """Each returned row is the database's row with that id, field for field."""
    by_id = {m.id: m for m in Message.objects.filter(pk__in=[r.message.id for r in results])}
    for result in results:
        row, stored = result.message, by_id[result.message.id]
        assert (row.conversation_id, row.sender_id, row.receiver_id, row.content, row.client_id) == (
            stored.conversation_id, stored.sender_id, stored.receiver_id, stored.content, stored.client_id
        )
        assert row.created_at == stored.created_at and row.edited_at is stored.edited_at is None
        assert wire.message_dict(row, False) == wire.message_dict(stored, False)


@pytest.mark.django_db
def test_a_batch_takes_ids_in_send_order_and_each_id_names_its_row(make_user, published, django_capture_on_commit_callbacks):
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    requests = _interleaved(alice, bob, carol, ab, cb, 40)
    with django_capture_on_commit_callbacks(execute=True):
        results = actions.do_send_messages(requests)
    assert all(not isinstance(r, ChatError) and r.created for r in results)
    assert [r.message.content for r in results] == [r.content for r in requests]
    ids = [r.message.id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 40
    _assert_stored_as_returned(results)
    for conversation in (ab, cb):
        in_db = list(Message.objects.filter(conversation_id=conversation).order_by("id").values_list("content", flat=True))
        assert in_db == [r.content for r in requests if r.conversation_id == conversation]
    # one publish, events built from the rows, in send order
    assert len(published) == 1
    assert [e["message"] for e in published[0]] == [wire.message_dict(r.message, False) for r in results]
    side = participant(bob.pk, alice.pk)
    assert (side.last_message_id, side.unread_count, side.visible_count) == (results[-2].message.id, 20, 20)


@pytest.mark.django_db
def test_client_id_repeats_inside_a_batch_and_across_batches(make_user):
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    to_carol = get_or_create_conversation(alice.pk, carol.pk).id
    first = actions.do_send_messages([SendRequest(alice.pk, bob.pk, ab, "one", "k1")])[0]
    results = actions.do_send_messages(
        [
            SendRequest(alice.pk, bob.pk, ab, "one (retry)", "k1"),  # stored in an earlier batch
            SendRequest(alice.pk, bob.pk, ab, "two", "k2"),  # new
            SendRequest(alice.pk, bob.pk, ab, "two (retry)", "k2"),  # earlier in this batch
            SendRequest(alice.pk, carol.pk, to_carol, "two for carol", "k2"),  # reused for another receiver
            SendRequest(carol.pk, bob.pk, cb, "carol's k1", "k1"),  # another sender's k1 is its own
        ]
    )
    assert results[0].message == first.message and not results[0].created
    assert results[1].created and results[1].message.content == "two"
    assert results[2].message == results[1].message and not results[2].created
    assert isinstance(results[3], Conflict) and results[3].code == "client_id_conflict"
    assert results[4].created and results[4].message.id > results[1].message.id
    assert Message.objects.count() == 3
    _assert_stored_as_returned([first, results[1], results[4]])
    assert participant(bob.pk, alice.pk).unread_count == 2


@pytest.mark.django_db
def test_a_poison_send_fails_alone_and_nothing_is_half_stored(make_user, published, django_capture_on_commit_callbacks):
    """A row the database refuses (a lone surrogate: neither SQLite's nor PostgreSQL's
    driver encodes it) among client_id sends and a repeat: the others are stored in order,
    the repeat still answers its message, one publish."""
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    requests = [
        SendRequest(alice.pk, bob.pk, ab, "one", "k1"),
        SendRequest(carol.pk, bob.pk, cb, "bad\ud800", "k-bad"),
        SendRequest(alice.pk, bob.pk, ab, "one again", "k1"),
        SendRequest(carol.pk, bob.pk, cb, "two"),
        SendRequest(alice.pk, bob.pk, ab, "three", "k3"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        results = actions.do_send_messages(requests)
    assert isinstance(results[1], StoreFailed)
    assert results[2].message == results[0].message and not results[2].created
    stored = [results[0], results[3], results[4]]
    assert [r.message.content for r in stored] == ["one", "two", "three"]
    assert [r.message.id for r in stored] == sorted(r.message.id for r in stored)
    _assert_stored_as_returned(stored)
    assert Message.objects.count() == 3 and not Message.objects.filter(client_id="k-bad").exists()
    assert [[e["message"]["content"] for e in batch] for batch in published] == [["one", "two", "three"]]
    assert participant(bob.pk, alice.pk).unread_count == 2 and participant(bob.pk, carol.pk).unread_count == 1
    assert participant(alice.pk, bob.pk).visible_count == 2 and participant(carol.pk, bob.pk).visible_count == 1


@pytest.mark.django_db
def test_a_batch_beyond_the_variable_limit_is_chunked_in_order(make_user):
    """1,000 sends in one call (on SQLite at least two statements' worth): Django 5.2 counts
    999 bind variables for SQLite, 142 rows of 7 columns, so the insert takes several
    statements; PostgreSQL's arrays take one. Ids still follow the sends' order, every
    row is stored once, counters add up."""
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    per_statement = message_store._rows_per_statement()
    count = max(1000, 2 * per_statement + 2) if connection.vendor == "sqlite" else 1000
    requests = _interleaved(alice, bob, carol, ab, cb, count, client_ids=True)
    with CaptureQueriesContext(connection) as captured:
        results = actions.do_send_messages(requests)
    inserts = [q for q in captured if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == math.ceil(count / per_statement)
    if connection.vendor == "sqlite":
        assert len(inserts) > 1  # the limit was really crossed
    ids = [r.message.id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == count
    _assert_stored_as_returned(results)
    assert Message.objects.count() == count
    assert participant(bob.pk, alice.pk).unread_count == participant(bob.pk, carol.pk).unread_count == count // 2
    # the same client_ids again: every one answers its stored message, nothing new
    again = actions.do_send_messages(requests)
    assert [r.message for r in again] == [r.message for r in results] and not any(r.created for r in again)
    assert Message.objects.count() == count


@pytest.mark.django_db
@pytest.mark.parametrize("hook", ["habitto_accounts.cards.user_cards", "habitto_chat.users.default_user_cards"])
def test_the_active_check_is_read_with_the_user_cards(make_user, settings, hook):
    """One query on the user table per batch (both shipped USER_CARDS hooks report
    is_active), and a deactivated sender is still refused by it."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "USER_CARDS": hook}
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    user_table = get_user_model()._meta.db_table
    with CaptureQueriesContext(connection) as captured:
        results = actions.do_send_messages(_interleaved(alice, bob, carol, ab, cb, 6))
    assert all(not isinstance(r, ChatError) for r in results)
    assert sum(f'FROM "{user_table}"' in q["sql"] for q in captured) == 1
    get_user_model().objects.filter(pk=carol.pk).update(is_active=False)
    results = actions.do_send_messages(_interleaved(alice, bob, carol, ab, cb, 4))
    assert [type(r).__name__ for r in results] == ["SendResult", "Forbidden"] * 2


def cards_without_active(user_ids):
    """A USER_CARDS hook written before UserCard.active existed."""
    rows = get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")
    return {pk: UserCard(pk, username, username) for pk, username in rows}


@pytest.mark.django_db
def test_a_hook_without_the_active_flag_costs_one_more_query(make_user, settings):
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "USER_CARDS": "tests.test_chat_insert.cards_without_active"}
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    get_user_model().objects.filter(pk=carol.pk).update(is_active=False)
    user_table = get_user_model()._meta.db_table
    with CaptureQueriesContext(connection) as captured:
        results = actions.do_send_messages(_interleaved(alice, bob, carol, ab, cb, 4))
    assert [type(r).__name__ for r in results] == ["SendResult", "Forbidden"] * 2
    assert sum(f'FROM "{user_table}"' in q["sql"] for q in captured) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
def test_the_writer_thread_keeps_its_statements_out_of_the_debug_query_log(make_user, settings):
    """With DEBUG on, the batcher's writer runs the chat's statements on a plain cursor:
    none lands in connection.queries there; the host's card hook and BEGIN/COMMIT still do.
    Any other thread logs them as usual, and CaptureQueriesContext in the writer sees them."""
    settings.DEBUG = True
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    chat_tables = tuple(f'"{model._meta.db_table}"' for model in (Message, Participant, Conversation))
    user_table = f'"{get_user_model()._meta.db_table}"'

    def batch_with_its_log(start):
        connection.queries_log.clear()
        results = batcher_module._write(_interleaved(alice, bob, carol, ab, cb, 6, client_ids=True)[start:])
        assert all(not isinstance(r, ChatError) for r in results)
        return [q["sql"] for q in connection.queries]

    logged = batcher_module._writer.submit(batch_with_its_log, 0).result(timeout=30)
    assert not [sql for sql in logged if any(table in sql for table in chat_tables)], logged
    assert any(user_table in sql for sql in logged)  # the log is on: only the chat's statements skip it

    def captured_in_writer():
        with CaptureQueriesContext(connection) as captured:
            actions.do_send_messages([SendRequest(alice.pk, bob.pk, ab, "captured")])
        return [q["sql"] for q in captured]

    captured = batcher_module._writer.submit(captured_in_writer).result(timeout=30)
    assert any(sql.lstrip().upper().startswith("INSERT") for sql in captured)

    with ThreadPoolExecutor(max_workers=1) as elsewhere:
        logged = elsewhere.submit(batch_with_its_log, 3).result(timeout=30)  # repeats: only lookups
        elsewhere.submit(lambda: connection.close()).result(timeout=10)  # looked up in that thread
    assert any('"client_id"' in sql for sql in logged)
    assert Message.objects.count() == 7


@pytest.mark.django_db(transaction=True)
def test_two_conversations_written_at_once_keep_their_order(make_user):
    """Two threads storing batches into their own conversations at the same time: every
    send stored once, ids increasing in send order per conversation, counters exact."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # The in-memory test database fails a concurrent write at once ("table is locked").
        pytest.skip("needs a database that lets a second thread write (PostgreSQL)")
    alice, bob, carol, ab, cb = _two_conversations(make_user)
    failures = []

    def writer(sender, conversation):
        try:
            for batch in range(15):
                requests = [SendRequest(sender.pk, bob.pk, conversation, f"{sender.pk}-{batch}-{n}") for n in range(10)]
                results = actions.do_send_messages(requests)
                if any(isinstance(r, ChatError) for r in results):
                    failures.append(results)
        except Exception as error:  # reported below, not lost in the thread
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=args) for args in ((alice, ab), (carol, cb))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    for sender, conversation in ((alice, ab), (carol, cb)):
        rows = list(Message.objects.filter(conversation_id=conversation).order_by("id").values_list("content", flat=True))
        assert rows == [f"{sender.pk}-{batch}-{n}" for batch in range(15) for n in range(10)]
        side = participant(bob.pk, sender.pk)
        assert (side.unread_count, side.visible_count) == (150, 150)
