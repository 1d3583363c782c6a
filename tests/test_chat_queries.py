"""Bounded query counts: a page of conversations or of a thread, and every write, cost
the same number of queries whatever the number of conversations or messages."""

import itertools

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from habitto_chat import actions
from habitto_chat.sends import SendRequest
from habitto_chat.models import Conversation, Message, Participant

pytestmark = pytest.mark.django_db
User = get_user_model()
_names = itertools.count(1)


def bulk_users(n, prefix="bulk"):
    """n active users in one INSERT (no password hashing, no profile)."""
    tag = next(_names)
    User.objects.bulk_create(
        [User(username=f"{prefix}{tag}_{i}", first_name="F", last_name=str(i), password="!") for i in range(n)]
    )
    return list(User.objects.filter(username__startswith=f"{prefix}{tag}_").order_by("pk"))


def bulk_conversations(user, others):
    """Conversations of `user` with each of `others`, both Participant rows included."""
    pairs = [tuple(sorted((user.pk, other.pk))) for other in others]
    Conversation.objects.bulk_create([Conversation(user_low_id=low, user_high_id=high) for low, high in pairs])
    by_pair = {
        (c.user_low_id, c.user_high_id): c.pk
        for c in Conversation.objects.filter(user_low_id__in={p[0] for p in pairs}, user_high_id__in={p[1] for p in pairs})
    }
    sides = []
    for other in others:
        conversation_id = by_pair[tuple(sorted((user.pk, other.pk)))]
        sides.append(Participant(conversation_id=conversation_id, user_id=user.pk, other_user_id=other.pk))
        sides.append(Participant(conversation_id=conversation_id, user_id=other.pk, other_user_id=user.pk))
    Participant.objects.bulk_create(sides)
    return {other.pk: by_pair[tuple(sorted((user.pk, other.pk)))] for other in others}


def seed_conversations(user, n):
    """`user` with n conversations, each holding one message from the other person."""
    others = bulk_users(n)
    conversation_ids = bulk_conversations(user, others)
    actions.do_send_messages(
        [SendRequest(o.pk, user.pk, conversation_ids[o.pk], f"hello {o.pk}") for o in others]
    )
    return others


def seed_thread(user, other, n):
    """n messages between user and other, alternating senders, in batches of 100."""
    conversation_id = bulk_conversations(user, [other])[other.pk]
    requests = [
        SendRequest(*((user.pk, other.pk) if i % 2 else (other.pk, user.pk)), conversation_id, f"m{i}")
        for i in range(n)
    ]
    for start in range(0, n, 100):
        actions.do_send_messages(requests[start : start + 100])


def queries_of(call):
    """(number of queries, result) of one call."""
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return len(captured), result


def ok(response):
    assert response.status_code == 200, response.content
    return response.json()["data"]


def test_seeding_keeps_participant_pointers_consistent(make_user):
    """The bulk seed leaves pointers and unread counts as the send path would."""
    user = make_user()
    others = seed_conversations(user, 3)
    for other in others:
        mine = Participant.objects.get(user=user, other_user=other)
        theirs = Participant.objects.get(user=other, other_user=user)
        last = Message.objects.get(sender=other, receiver=user).pk
        assert (mine.last_message_id, mine.unread_count) == (last, 1)
        assert (theirs.last_message_id, theirs.unread_count) == (last, 0)


def test_conversation_list_queries_same_for_10_and_500(make_user, client_for):
    """One page of the conversation list costs the same queries for 10 and 500 conversations."""
    small, large = make_user(), make_user()
    seed_conversations(small, 10)
    seed_conversations(large, 500)
    small_client, large_client = client_for(small), client_for(large)
    n_small, small_page = queries_of(lambda: ok(small_client.get("/api/messages/conversations/")))
    n_large, large_page = queries_of(lambda: ok(large_client.get("/api/messages/conversations/")))
    assert (small_page["count"], len(small_page["results"])) == (10, 10)
    assert (large_page["count"], len(large_page["results"])) == (500, 50)
    assert all(item["unread_count"] == 1 for item in large_page["results"])
    assert n_small == n_large
    # auth (user, revoked-token check) + count + page + last messages + other side + cards
    assert n_large == 7


def test_conversation_list_later_page_queries_same(make_user, client_for):
    """A deep page (page 10 of 500) costs the same as the first page."""
    user = make_user()
    seed_conversations(user, 500)
    client = client_for(user)
    n_first, first = queries_of(lambda: ok(client.get("/api/messages/conversations/", {"page_size": 50})))
    n_deep, deep = queries_of(lambda: ok(client.get("/api/messages/conversations/", {"page": 10, "page_size": 50})))
    assert len(deep["results"]) == 50 and deep["next"] is None
    assert n_first == n_deep


def test_thread_queries_same_for_10_and_500(make_user, client_for):
    """One page of a thread costs the same queries for 10 and 500 messages."""
    small, large, other = make_user(), make_user(), make_user()
    seed_thread(small, other, 10)
    seed_thread(large, other, 500)
    small_client, large_client = client_for(small), client_for(large)
    params = {"other_user_id": other.pk}
    n_small, small_page = queries_of(lambda: ok(small_client.get("/api/messages/thread/", params)))
    n_large, large_page = queries_of(lambda: ok(large_client.get("/api/messages/thread/", params)))
    assert (small_page["count"], len(small_page["results"])) == (10, 10)
    assert (large_page["count"], len(large_page["results"])) == (500, 50)
    assert n_small == n_large
    # auth (2) + counterpart check + both sides + page; the count is the side's visible_count
    assert n_large == 5


def test_thread_cursor_queries_same_for_10_and_500(make_user, client_for):
    """A before_id page costs the same for 10 and 500 messages (and counts nothing)."""
    small, large, other = make_user(), make_user(), make_user()
    seed_thread(small, other, 10)
    seed_thread(large, other, 500)
    counts = []
    for user in (small, large):
        newest = Participant.objects.get(user=user, other_user=other).last_message_id
        client = client_for(user)
        n, page = queries_of(
            lambda: ok(client.get("/api/messages/thread/", {"other_user_id": other.pk, "before_id": newest}))
        )
        assert page["count"] is None and page["results"][0]["id"] == newest - 1
        counts.append(n)
    assert counts[0] == counts[1] == 5


def test_message_list_queries_same_for_10_and_500(make_user, client_for):
    """GET /api/messages/ costs the same for 10 and 500 messages."""
    small, large, other = make_user(), make_user(), make_user()
    seed_thread(small, other, 10)
    seed_thread(large, other, 500)
    n_small, small_page = queries_of(lambda: ok(client_for(small).get("/api/messages/")))
    n_large, large_page = queries_of(lambda: ok(client_for(large).get("/api/messages/")))
    assert (small_page["count"], large_page["count"]) == (10, 500)
    assert n_small == n_large


@pytest.mark.parametrize("n", [5, 200])
def test_clear_is_one_update_whatever_the_size(make_user, n):
    """do_clear_conversation is one UPDATE of one Participant row and writes no message row."""
    user, other = make_user(), make_user()
    seed_thread(user, other, n)
    with CaptureQueriesContext(connection) as captured:
        cleared = actions.do_clear_conversation(user.pk, other.pk)
    assert cleared == Message.objects.order_by("-pk").values_list("pk", flat=True).first()
    sql = [q["sql"].upper() for q in captured]
    updates = [s for s in sql if s.startswith("UPDATE")]
    assert len(updates) == 1 and "CHAT_PARTICIPANT" in updates[0].replace('"', "")
    assert not any("CHAT_MESSAGE" in s.replace('"', "") for s in sql if not s.startswith("SELECT"))


def test_clear_query_count_is_constant(make_user, django_assert_num_queries):
    """do_clear_conversation costs the same number of queries for 5 and for 200 messages."""
    counts = []
    for n in (5, 200):
        user, other = make_user(), make_user()
        seed_thread(user, other, n)
        with CaptureQueriesContext(connection) as captured:
            actions.do_clear_conversation(user.pk, other.pk)
        counts.append(len(captured))
    assert counts[0] == counts[1]
    user, other = make_user(), make_user()
    seed_thread(user, other, 3)
    with django_assert_num_queries(counts[0]):
        actions.do_clear_conversation(user.pk, other.pk)


def test_send_queries_do_not_grow_with_history(make_user, client_for):
    """POST /api/messages/ costs the same with 1 and with 500 earlier messages."""
    counts = []
    for n in (1, 500):
        user, other = make_user(), make_user()
        seed_thread(user, other, n)
        client = client_for(user)
        count, _ = queries_of(lambda: client.post("/api/messages/", {"receiver": other.pk, "content": "x"}, format="json"))
        counts.append(count)
    assert counts[0] == counts[1]


@pytest.mark.parametrize("call", ["mark_thread_read", "delete"])
def test_reads_and_deletes_do_not_grow_with_history(make_user, client_for, call):
    """mark_thread_read and delete cost the same with 10 and 500 messages."""
    counts = []
    for n in (10, 500):
        user, other = make_user(), make_user()
        seed_thread(user, other, n)
        client = client_for(user)
        if call == "mark_thread_read":
            count, response = queries_of(
                lambda: client.post("/api/messages/mark_thread_read/", {"other_user_id": other.pk}, format="json")
            )
        else:
            mine = Message.objects.filter(sender=user).order_by("-pk").first().pk
            count, response = queries_of(lambda: client.delete(f"/api/messages/{mine}/"))
        assert response.status_code == 200, response.content
        counts.append(count)
    assert counts[0] == counts[1]



@pytest.mark.django_db
def test_visible_count_matches_a_real_count_through_send_clear_and_delete(make_user):
    """The thread's count comes from the side's visible_count; it never drifts from COUNT(*)."""
    from habitto_chat import actions
    from habitto_chat.models import Message, Participant

    alice, bob = make_user(), make_user()

    def check():
        for user, other in ((alice, bob), (bob, alice)):
            side = Participant.objects.get(user=user, other_user=other)
            real = Message.objects.filter(conversation_id=side.conversation_id, id__gt=side.cleared_before_id).count()
            assert side.visible_count == real

    sent = [actions.do_send_message(alice.pk, bob.pk, f"m{n}").message for n in range(3)]
    check()
    actions.do_clear_conversation(alice.pk, bob.pk)
    check()
    later = actions.do_send_message(bob.pk, alice.pk, "after the clear").message
    check()
    actions.do_delete_message(alice.pk, sent[0].id)  # hidden for alice, visible for bob
    actions.do_delete_message(bob.pk, later.id)  # visible for both
    check()
    assert Participant.objects.get(user=alice).visible_count == 0
    assert Participant.objects.get(user=bob).visible_count == 2
