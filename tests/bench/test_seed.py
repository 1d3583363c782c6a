"""bench/seed.py writes raw SQL into the chat tables: after seeding, the server must read
exactly what the chat's own actions would have stored (lists, counts, pages)."""

import json
import subprocess
import sys

import pytest

from bench.seed import plan
from tests.support.live import REPO_DIR, LiveServer, free_port, http_json, manage, server_env

PASSWORD = "Seed-test-Passw0rd!"


def test_plan_gives_the_big_thread_the_remainder():
    conversations = plan(1, [2, 3], [4, 5, 6], total=900)
    assert conversations[0] == (1, 2, 200)  # 900 - 100 (small partner) - 3 * 200 (other pairs)
    assert conversations[1:] == [(1, 3, 100), (4, 5, 200), (4, 6, 200), (5, 6, 200)]
    with pytest.raises(SystemExit):
        plan(1, [2, 3], [4, 5, 6], total=750)


@pytest.mark.e2e
def test_seeded_database_reads_like_one_the_chat_wrote(tmp_path):
    env = server_env(tmp_path)
    manage(env, "migrate", "--noinput")
    users = tmp_path / "users.json"
    manage(env, "create_loadtest_users", "--count", "6", "--prefix", "seed", "--password", PASSWORD,
           "--output", str(users))
    summary_file = tmp_path / "seed.json"
    subprocess.run([sys.executable, "-m", "bench.seed", "--users", str(users), "--messages", "900",
                    "--partners", "2", "--output", str(summary_file)],
                   env=env, cwd=REPO_DIR, check=True, timeout=120, capture_output=True)
    seed = json.loads(summary_file.read_text())
    assert (seed["messages"], seed["conversations"], seed["big_thread_messages"]) == (900, 5, 200)
    user = next(a for a in json.loads(users.read_text()) if a["id"] == seed["user_id"])
    with LiveServer(env, [free_port()], tmp_path / "server.log") as server:
        status, body = http_json("POST", f"{server.http_url()}/api/login/",
                                 {"username": user["username"], "password": PASSWORD})
        assert status == 200, body
        token = body["data"]["access"]
        status, body = http_json("GET", f"{server.http_url()}/api/messages/conversations/", token=token)
        assert status == 200, body
        listed = body["data"]["results"]
        assert sorted(c["counterpart"]["id"] for c in listed) == sorted([seed["big_partner_id"],
                                                                         seed["small_partner_id"]])
        assert all(c["unread_count"] == 0 for c in listed)  # the seed marks everything read
        status, body = http_json("GET", f"{server.http_url()}/api/messages/thread/"
                                 f"?other_user_id={seed['big_partner_id']}&page=1&page_size=50", token=token)
        assert status == 200, body
        page = body["data"]
        assert page["count"] == 200 and len(page["results"]) == 50
        ids = [m["id"] for m in page["results"]]
        assert len(set(ids)) == 50
