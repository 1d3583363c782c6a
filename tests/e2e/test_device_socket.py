"""/ws/v2/, the device socket, against real server processes, written from SPEC-v2 (the
wire contract) rather than from the server: resume while the others keep sending, on
one process and across two processes with Redis, resume after a restart, offline
edits/deletions/receipts/clears recovered with `since`, and a backlog bigger than one
replay page. Frames are read off the wire with websocket-client (tests/support/device_socket.py)."""

import json
import threading
import time
import uuid

import psycopg
import pytest

from tests.support.chat import provision, ready_with_redis, two_ready_servers, wait_for
from tests.support.device_socket import (
    Device,
    Sender,
    Users,
    V2Socket,
    check_created,
    created_ids,
    moment,
    own_redis_prefixes,
    session_parts,
    v2_database,  # noqa: F401  (the fixture)
    v2_url,
)
from tests.support.live import LiveServer, free_port, http_json, manage, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SIGNING_KEY = "v2-e2e-" + uuid.uuid4().hex  # lets the tests mint tokens (login costs a password hash)
# Two senders at 20 frames/s each, for seconds, stay well inside the send budget.
SERVER_SETTINGS = {"JWT_SIGNING_KEY": SIGNING_KEY, "CHAT_SEND_RATE": 100, "CHAT_SEND_BURST": 100}
RATE = 20  # frames per second of each steady sender
OVERLAP_SECONDS = 5  # SPEC-v2 RESUME_OVERLAP_SECONDS


@pytest.fixture(scope="module")
def single(tmp_path_factory, v2_database):
    """One server process, PostgreSQL, no Redis (in-memory channel layer)."""
    state = tmp_path_factory.mktemp("v2-single")
    env = server_env(state, database_url=v2_database, **SERVER_SETTINGS)
    users = Users(provision(env, 16, "v2one"), SIGNING_KEY)
    with LiveServer(env, [free_port()], state / "server.log") as live:
        live.users = users
        yield live


@pytest.fixture(scope="module")
def pair(tmp_path_factory, v2_database, redis_url):
    """Two server processes sharing PostgreSQL and Redis: (first, second, users)."""
    state = tmp_path_factory.mktemp("v2-pair")
    env = server_env(state, database_url=v2_database, redis_url=redis_url, **SERVER_SETTINGS,
                     **own_redis_prefixes())
    users = Users(provision(env, 12, "v2two"), SIGNING_KEY)
    with two_ready_servers(env, state) as (first, second):
        yield first, second, users


def opened(server, user, **query):
    """A /ws/v2/ socket of `user`, once its sync.done came."""
    sock = V2Socket(v2_url(server, user["token"], **query))
    sock.wait_type("sync.done")
    return sock


def send(sock, to, content):
    """One send over a socket; the message id from its ack."""
    ack = sock.request({"type": "send", "to": to, "content": content, "client_id": uuid.uuid4().hex})
    assert ack["type"] == "ack" and ack["duplicate"] is False, ack
    return ack["message_id"]


def stored_by_server_code(env, sends):
    """Messages stored by server-side code in a process of its own (no socket server
    involved): [(sender, receiver, content)] -> their ids."""
    code = (
        "import json\n"
        "from habitto_chat.actions import do_send_message\n"
        f"print('IDS', json.dumps([do_send_message(s, r, c).message.id for s, r, c in {sends!r}]))\n"
    )
    return json.loads(manage(env, "shell", "-c", code).split("IDS", 1)[1])


def messages_of(sock):
    return [f for f in sock.frames if f.get("type") == "message.created"]


def wait_holding(device, sock, ids, timeout=10):
    """Until `device` holds, or `sock` has delivered, every id in `ids`."""
    wait_for(lambda: set(ids) <= set(device.held) | set(created_ids(sock.frames)), timeout, 0.05,
             what=f"user {device.user['id']} receiving {len(ids)} messages")


# --- 1 and 2: resume while the others keep sending --------------------------------------


def resume_while_others_send(users, alice_server, carol_server, bob_servers):
    """Alice and Carol each send to Bob at a steady rate the whole time. Bob connects
    on bob_servers[0], then goes away (a clean close, then a dropped connection, in
    turn) and comes back on the next server with after_id/since/recent, while they go on
    sending, including during his handshake. Over all his connections every message
    comes exactly once, in id order per conversation within each connection, replayed
    ones flagged and before sync.done, live ones after it."""
    alice, bob, carol = users.take(3)
    alice_sock, carol_sock = opened(alice_server, alice), opened(carol_server, carol)
    device = Device(bob)
    senders = [Sender(alice_sock, bob["id"], RATE, "alice").start(),
               Sender(carol_sock, bob["id"], RATE, "carol").start()]
    try:
        time.sleep(0.3)  # something to replay on the first connection too
        sock = device.connect(bob_servers[0])
        for turn, server in enumerate(bob_servers[1:]):
            time.sleep(0.8)  # online: live frames
            sock.abort() if turn % 2 else sock.close()
            device.absorb(sock)
            time.sleep(0.8)  # offline: they keep sending
            sock = device.connect(server)
        time.sleep(0.8)
    finally:
        for sender in senders:
            sender.stop()
    sent = {sender.label: sender.wait_all_acked() for sender in senders}
    expected = set(sent["alice"]) | set(sent["carol"])
    wait_holding(device, sock, expected)
    time.sleep(0.3)  # a late duplicate would show now
    sock.close()
    device.absorb(sock)
    for sock_ in (alice_sock, carol_sock):
        sock_.close()

    assert set(device.held) == expected, (
        f"missing {sorted(expected - set(device.held))}, unexpected {sorted(set(device.held) - expected)}")
    resumed = device.sessions[1:]
    assert all(done["replayed"] > 0 for _, done, _ in resumed), [d for _, d, _ in resumed]
    assert all(live for _, _, live in device.sessions), "every connection also had live messages"
    # Each sender's own socket: every message of theirs once, as acked, in id order.
    # Each sender's own socket: every message of theirs once, as acked, in id order, the
    # ack first ("ack after commit; then message.created to every device").
    for label, sock_ in (("alice", alice_sock), ("carol", carol_sock)):
        own = [f["message"]["id"] for f in messages_of(sock_)]
        assert own == sent[label] == sorted(sent[label]), label
        assert not [f for f in sock_.frames if f.get("type") == "error"]
        order = [("ack", f["message_id"]) if f.get("type") == "ack" else ("created", f["message"]["id"])
                 for f in sock_.frames if f.get("type") in ("ack", "message.created")]
        late_acks = [i for i in sent[label] if order.index(("ack", i)) > order.index(("created", i))]
        assert not late_acks, f"{label}: message.created before the ack for {late_acks[:10]}"


def test_resume_while_the_others_keep_sending_on_one_process(single):
    resume_while_others_send(single.users, single, single, [single, single, single])


@pytest.mark.redis
def test_resume_while_the_others_keep_sending_across_two_processes(pair):
    """Alice on process A, Carol on B; Bob starts on B, resumes onto A, then onto B."""
    first, second, users = pair
    resume_while_others_send(users, first, second, [second, first, second])


@pytest.mark.redis
def test_resume_on_a_process_whose_live_delivery_lags(pair, tmp_path):
    """Under load a message's live event reaches a process a while after its commit
    (the benchmarks' fan-out p99 with Redis is 170 ms). Process C here delivers every
    event 300 ms late (CHAT_TEST_DELIVERY_DELAY_MS). Bob resumes on C while Alice and
    Carol keep sending on A: a message committed just before his replay's read is
    replayed and its live event comes after sync.done; it must not reach him twice."""
    first, _, users = pair
    lagging = LiveServer({**first.env, "CHAT_TEST_DELIVERY_DELAY_MS": "300"}, [free_port()], tmp_path / "lagging.log")
    with lagging:
        wait_for(lambda: ready_with_redis(lagging), 15, what="readiness with Redis")
        resume_while_others_send(users, first, first, [lagging, lagging, lagging])


SLOW_COMMIT = """
CREATE OR REPLACE FUNCTION v2test_slow_commit() RETURNS trigger AS $$
BEGIN
  IF NEW.content = 'v2test: a slow commit' THEN PERFORM pg_sleep(2); END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER v2test_slow_commit BEFORE INSERT ON habitto_chat_message
  FOR EACH ROW EXECUTE FUNCTION v2test_slow_commit();
"""


def sql(database_url, statement):
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.redis
def test_a_lower_id_committed_after_a_higher_one_is_replayed_by_the_overlap(pair, v2_database):
    """Ids are handed out at INSERT and become visible at COMMIT: Carol's message on
    process B takes id N and commits 2 s later (a trigger sleeps), Alice's on A takes
    N+1 and commits at once. Bob's phone gets N+1 live and goes offline holding
    after_id = N+1; N commits meanwhile; the phone resumes and gets N from the overlap
    (RESUME_OVERLAP_SECONDS), exactly once. Bob's laptop, online all along on B,
    gets N live after N+1."""
    first, second, users = pair
    alice, bob, carol = users.take(3)
    alice_sock, carol_sock = opened(first, alice), opened(second, carol)
    laptop = opened(second, bob)
    phone = Device(bob)
    send(alice_sock, bob["id"], "hello from Alice")
    send(carol_sock, bob["id"], "hello from Carol")
    sock = phone.connect(first)
    sock.wait_type("sync.done")
    sql(v2_database, SLOW_COMMIT)
    try:
        carol_sock.send({"type": "send", "to": bob["id"], "content": "v2test: a slow commit", "client_id": "slow"})
        time.sleep(0.5)  # its id is taken; its transaction sleeps
        quick = send(alice_sock, bob["id"], "a quick commit")
        wait_holding(phone, sock, [quick])
        sock.close()
        phone.absorb(sock)
        slow = carol_sock.wait(lambda f: f.get("client_id") == "slow" and f.get("type") == "ack", 10)["message_id"]
    finally:
        sql(v2_database, "DROP TRIGGER IF EXISTS v2test_slow_commit ON habitto_chat_message")
    assert slow < quick and phone.after_id == quick, "the setting: a lower id committed after a higher one"
    sock = phone.connect(first)
    sock.wait_type("sync.done")
    time.sleep(0.3)
    sock.close()
    replay, done, live = phone.absorb(sock)
    assert created_ids(replay) == [slow] and done["after_id"] == quick, (created_ids(replay), done)
    laptop.wait(lambda f: f.get("type") == "message.created" and f["message"]["id"] == slow)
    laptop.close()
    got = created_ids(laptop.frames)
    assert got.count(slow) == 1 and got.index(slow) > got.index(quick), got
    for s_ in (alice_sock, carol_sock):
        s_.close()


# --- 3: resume after a restart -----------------------------------------------------------


def test_resume_after_the_server_restarts(single):
    """The only process stops; server-side code stores messages meanwhile (both
    directions); after the start both users' devices resume and get exactly those, then
    live ones."""
    alice, bob = single.users.take(2)
    devices = {"alice": Device(alice), "bob": Device(bob)}
    socks = {name: device.connect(single) for name, device in devices.items()}
    before = [send(socks["alice"], bob["id"], f"before the restart {n}") for n in range(3)]
    for name in devices:
        wait_holding(devices[name], socks[name], before)
    single.stop()
    try:
        for name, device in devices.items():
            socks[name].wait_closed(15)
            device.absorb(socks[name])
        while_down = stored_by_server_code(single.env, [
            (alice["id"], bob["id"], "while the server was down 1"),
            (bob["id"], alice["id"], "while the server was down 2 (from Bob's other device)"),
            (alice["id"], bob["id"], "while the server was down 3"),
        ])
    finally:
        single.start()
    socks = {name: device.connect(single) for name, device in devices.items()}
    for name in devices:
        socks[name].wait_type("sync.done")
    after = send(socks["alice"], bob["id"], "after the restart")
    for name, device in devices.items():
        wait_holding(device, socks[name], [after])
        socks[name].close()
        replay, done, live = device.absorb(socks[name])
        assert created_ids(replay) == while_down, name
        assert created_ids(live) == [after], name
        assert set(device.held) == set(before + while_down + [after])


@pytest.mark.redis
def test_resume_after_the_other_process_restarts(pair):
    """Bob's process stops; Alice goes on sending on the other one, over her socket and
    over REST; Bob's device resumes on the restarted process, gets exactly those, then
    Alice's next message live across the processes."""
    first, second, users = pair
    alice, bob = users.take(2)
    alice_sock = opened(first, alice)
    device = Device(bob)
    sock = device.connect(second)
    hello = send(alice_sock, bob["id"], "hello before the restart")
    wait_holding(device, sock, [hello])
    second.stop()
    try:
        sock.wait_closed(15)
        device.absorb(sock)
        meanwhile = [send(alice_sock, bob["id"], f"while B is down {n}") for n in range(3)]
        status, body = http_json("POST", f"{first.http_url()}/api/messages/",
                                 {"receiver": bob["id"], "content": "over REST while B is down"}, token=alice["token"])
        assert status == 201, body
        meanwhile.append(body["data"]["id"])
    finally:
        second.start()
        wait_for(lambda: ready_with_redis(second), 15, what="readiness with Redis after the restart")
    sock = device.connect(second)
    sock.wait_type("sync.done")
    live = send(alice_sock, bob["id"], "live across the processes after the restart")
    wait_holding(device, sock, [live])
    sock.close()
    alice_sock.close()
    replay, _, live_frames = device.absorb(sock)
    assert created_ids(replay) == meanwhile
    assert created_ids(live_frames) == [live]


# --- 4: what changed while offline comes back with `since` --------------------------------


def test_offline_edits_deletions_receipts_and_clears_are_recovered_with_since(single):
    """Bob's phone holds the conversation and goes offline; meanwhile Alice edits one
    message, deletes another, reads Bob's, sends one and edits it, sends one and deletes
    it; Bob's other device (REST) reads Alice's and clears his conversation with Carol.
    The phone resumes with a `sync` frame: each change comes back flagged replay, before
    sync.done; the edited new message comes with its current content."""
    alice, bob, carol = single.users.take(3)
    api = single.http_url()
    alice_sock, carol_sock = opened(single, alice), opened(single, carol)
    a = [send(alice_sock, bob["id"], f"alice {n}") for n in range(4)]
    bob_laptop = opened(single, bob)
    b1 = send(bob_laptop, alice["id"], "bob 1")
    bob_laptop.close()
    c1 = send(carol_sock, bob["id"], "carol 1")

    phone = Device(bob)
    sock = phone.connect(single)  # after_id=0: everything so far
    sock.wait_type("sync.done")
    sock.close()
    phone.absorb(sock)
    assert set(phone.held) == {*a, b1, c1}

    # While the phone is offline:
    edited = alice_sock.request({"type": "edit", "message_id": a[1], "content": "alice 1, edited"}, "message.edited")
    assert edited.get("type") != "error", edited
    alice_sock.wait(lambda f: f.get("type") == "message.edited" and f["message"]["id"] == a[1])
    status, body = http_json("DELETE", f"{api}/api/messages/{a[2]}/", token=alice["token"])
    assert status in (200, 204), body
    read = alice_sock.request({"type": "read", "message_id": b1}, "thread.read")
    assert read.get("type") != "error", read
    alice_sock.wait_type("thread.read", reader=alice["id"], last_read_id=b1)
    status, body = http_json("POST", f"{api}/api/messages/mark_thread_read/", {"other_user_id": alice["id"]},
                             token=bob["token"])
    assert status == 200, body
    status, body = http_json("POST", f"{api}/api/messages/clear_conversation/", {"other_user_id": carol["id"]},
                             token=bob["token"])
    assert status == 200, body
    a4 = send(alice_sock, bob["id"], "alice 4")
    status, body = http_json("PATCH", f"{api}/api/messages/{a4}/", {"content": "alice 4, edited"}, token=alice["token"])
    assert status == 200, body
    a5 = send(alice_sock, bob["id"], "alice 5, deleted at once")
    status, body = http_json("DELETE", f"{api}/api/messages/{a5}/", token=alice["token"])
    assert status in (200, 204), body

    sock = V2Socket(v2_url(single, bob["token"]))  # no resume query: a sync frame instead
    first_done = sock.wait_type("sync.done")
    assert first_done["replayed"] == 0
    start = len(sock.frames)
    sock.send({"type": "sync", "after_id": phone.after_id, "since": phone.since, "recent": phone.recent()})
    done = sock.wait_type("sync.done", start=start)
    sock.close()
    frames = sock.frames[start:sock.frames.index(done)]
    replay = [f for f in frames if f.get("type") != "presence.snapshot"]
    assert all(f.get("replay") is True for f in replay), replay

    created = [check_created(f, bob["id"]) for f in replay if f["type"] == "message.created"]
    assert [f["message"]["id"] for f in created] == [a4], "only the new, undeleted message is replayed"
    assert created[0]["message"]["content"] == "alice 4, edited" and created[0]["message"]["edited_at"]
    assert done["replayed"] == 1 and done["after_id"] == a4, done

    def one(kind, **fields):
        found = [f for f in replay if f["type"] == kind and all(f.get(k) == v for k, v in fields.items())]
        assert found, f"no replayed {kind} {fields} in {replay}"
        return found[0]

    pair_ab, pair_bc = sorted((alice["id"], bob["id"])), sorted((bob["id"], carol["id"]))
    edit = one("message.edited", pair=pair_ab)
    assert edit["message"]["id"] == a[1] and edit["message"]["content"] == "alice 1, edited", edit
    assert edit["message"]["edited_at"], edit
    deleted = one("message.deleted", message_id=a[2], pair=pair_ab)
    assert set(deleted) == {"type", "message_id", "pair", "replay"}, deleted
    one("thread.read", reader=alice["id"], last_read_id=b1, pair=pair_ab)  # Alice's receipt
    bobs_read = one("thread.read", reader=bob["id"], pair=pair_ab)  # Bob's other device read
    assert bobs_read["last_read_id"] >= a[3], bobs_read
    one("conversation.cleared", cleared_before_id=c1, pair=pair_bc)
    assert not [f for f in replay if f["type"] == "message.edited" and f["message"]["id"] == a4], \
        "a message newer than after_id comes with its current content, not as an edit"
    assert not [f for f in sock.frames if f.get("type") == "error"], sock.frames
    # The clear is private: Carol's socket never heard of it.
    assert not [f for f in carol_sock.frames if f.get("type") == "conversation.cleared"]
    alice_sock.close()
    carol_sock.close()

    # A new device of Bob's starting from nothing: neither deleted nor cleared messages,
    # the edited ones with their current content.
    with V2Socket(v2_url(single, bob["token"], after_id=0)) as fresh:
        done = fresh.wait_type("sync.done")
    replayed = {f["message"]["id"]: f["message"] for f in fresh.frames[:fresh.frames.index(done)]
                if f.get("type") == "message.created"}
    assert sorted(replayed) == [a[0], a[1], a[3], b1, a4], "not a[2], a5 (deleted) nor c1 (cleared)"
    assert replayed[a[1]]["content"] == "alice 1, edited" and replayed[a4]["content"] == "alice 4, edited"


def test_the_newest_edit_made_while_offline_wins_after_a_resume(single):
    """Alice edits one message ten times a second while Bob's phone comes and goes; she
    stops while it is offline. Applying the phone's frames in arrival order, over all
    its connections, ends with her last version, which came in the last resume."""
    alice, bob = single.users.take(2)
    alice_sock = opened(single, alice)
    target = send(alice_sock, bob["id"], "version 0")
    phone = Device(bob)
    sock = phone.connect(single)
    sock.wait_type("sync.done")
    versions, stop = [], threading.Event()

    def edit():
        while not stop.is_set():
            versions.append(len(versions) + 1)
            alice_sock.send({"type": "edit", "message_id": target, "content": f"version {versions[-1]}"})
            stop.wait(0.1)

    editor = threading.Thread(target=edit, daemon=True)
    editor.start()
    connections = []
    try:
        for _ in range(2):
            time.sleep(0.6)
            sock.close()
            phone.absorb(sock, expect_replay_only_created=False)
            connections.append(sock.frames)
            time.sleep(0.6)
            sock = phone.connect(single)
        time.sleep(0.6)
        sock.close()
        phone.absorb(sock, expect_replay_only_created=False)
        connections.append(sock.frames)
    finally:
        stop.set()
        editor.join(5)
    last = f"version {versions[-1]}"
    alice_sock.wait(lambda f: f.get("type") == "message.edited" and f["message"]["content"] == last)
    alice_sock.close()
    sock = phone.connect(single)
    done = sock.wait_type("sync.done")
    sock.close()
    connections.append(sock.frames[:sock.frames.index(done) + 1])
    content = None
    for frames in connections:
        for frame in frames:
            if frame.get("type") in ("message.created", "message.edited") and frame["message"]["id"] == target:
                content = frame["message"]["content"]
    assert content == last, f"the phone shows {content!r}, Alice's last edit is {last!r}"
    assert any(f.get("type") == "message.edited" and f.get("replay") for f in connections[-1]), connections[-1]
    assert not [f for frames in connections for f in frames if f.get("type") == "error"]


# --- 5: a backlog of several replay pages ---------------------------------------------


BACKLOG = 1203  # more than two pages of 500


def test_a_backlog_of_more_than_500_messages_replays_completely_in_order(single):
    """1,203 messages in two conversations (stored by server-side code) replay to a
    device starting from after_id=0 completely, oldest first, while Alice keeps sending
    live; every message once. Then the overlap rule: resuming from the middle without
    `recent` also replays the held messages created within 5 s before after_id's one,
    and with `recent` exactly the newer ones."""
    alice, bob, carol = single.users.take(3)
    directions = [(alice["id"], bob["id"]), (carol["id"], bob["id"]), (bob["id"], alice["id"])]
    code = (
        "import json\n"
        "from habitto_chat.actions import do_open_conversation, do_send_messages\n"
        "from habitto_chat.sends import SendRequest\n"
        f"directions = {directions!r}\n"
        "conversations = {d: do_open_conversation(*d) for d in directions}\n"
        "ids = []\n"
        f"for start in range(0, {BACKLOG}, 200):\n"
        "    batch = [SendRequest(*directions[n % 3], conversations[directions[n % 3]], f'backlog {n}')\n"
        f"             for n in range(start, min(start + 200, {BACKLOG}))]\n"
        "    ids += [result.message.id for result in do_send_messages(batch)]\n"
        "print('IDS', json.dumps(ids))\n"
    )
    backlog = json.loads(manage(single.env, "shell", "-c", code).split("IDS", 1)[1])
    assert len(backlog) == BACKLOG and backlog == sorted(backlog)

    alice_sock = opened(single, alice)
    device = Device(bob)
    sender = Sender(alice_sock, bob["id"], RATE, "live during the replay").start()
    try:
        time.sleep(0.2)
        sock = device.connect(single)  # after_id=0
        sock.wait_type("sync.done", timeout=20)
        time.sleep(0.5)
    finally:
        sender.stop()
    live_ids = sender.wait_all_acked()
    wait_holding(device, sock, live_ids)
    sock.close()
    alice_sock.close()
    replay, done, live = device.absorb(sock)
    replayed = created_ids(replay)
    assert replayed == sorted(replayed), "oldest first"
    assert set(backlog) <= set(replayed)
    assert set(device.held) == set(backlog) | set(live_ids)
    assert done["replayed"] >= BACKLOG

    # Resuming from the middle (the 300th message), without and with `recent`.
    middle = backlog[299]
    held = device.held
    cutoff = moment(held[middle]["created_at"]).timestamp() - OVERLAP_SECONDS
    overlap = {i for i in held if i <= middle and moment(held[i]["created_at"]).timestamp() >= cutoff}
    newer = sorted(i for i in held if i > middle)
    recent = sorted(i for i in held if i <= middle and moment(held[i]["created_at"]).timestamp()
                    >= moment(held[middle]["created_at"]).timestamp() - 10)
    for query, expected in (({}, sorted(overlap | set(newer))), ({"recent": recent}, newer)):
        sock = V2Socket(v2_url(single, bob["token"], after_id=middle, **query))
        done = sock.wait_type("sync.done", timeout=20)
        sock.close()
        _, before, done, _ = session_parts(sock.frames[:sock.frames.index(done) + 1], bob["id"])
        got = created_ids(before)
        assert got == expected, (
            f"{'with' if query else 'without'} recent: {len(got)} replayed, {len(expected)} expected; "
            f"first extra {sorted(set(got) - set(expected))[:5]}, first missing {sorted(set(expected) - set(got))[:5]}")
        assert done["replayed"] == len(expected) and done["after_id"] == max(held)
