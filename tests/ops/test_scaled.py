"""`fab health` / `make health BACKENDS=2` against the scaled stack's shape without Docker:
two real backend processes (one PostgreSQL, one Redis) behind a real nginx running
deploy/nginx/habitto-chat.conf on its own WS and HTTP ports. The proxy and each backend
are checked, each backend named by its address; a stopped backend is CRITICAL while the
proxy keeps working; a metrics threshold crossed is WARNING naming the threshold."""

import json

import pytest

from habitto_client import ChatHTTP, ChatSocket, room_url
from tests.ops.conftest import PROBE_PASSWORD, fab
from tests.ops.test_out_of_the_box import LIMIT, make_health
from tests.support import services
from tests.support.live import LiveServer, free_port, free_port_range, manage, server_env
from tests.support.nginx import Nginx, nginx_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory, postgres_admin_url, redis_url):
    """nginx on two free ports (its "8000" and "8001") in front of two backends on
    base and base+1; yields (backends, nginx, ONCALL_* env)."""
    nginx_binary()  # skip before starting anything when there is no nginx
    folder = tmp_path_factory.mktemp("scaled")
    database, drop = services.create_postgres_database(postgres_admin_url)
    env = server_env(folder, database_url=database, redis_url=redis_url)
    manage(env, "migrate", "--noinput")
    accounts = folder / "probes.json"
    manage(env, "create_loadtest_users", "--count", "2", "--prefix", "scaledprobe",
           "--password", PROBE_PASSWORD, "--output", str(accounts))
    base = free_port_range(2)
    backends = [LiveServer(env, [base + i], folder / f"backend{i}.log") for i in range(2)]
    nginx = None
    try:
        for backend in backends:
            backend.start()
        ws_port, http_port = free_port(), free_port()
        nginx = Nginx(folder / "nginx", [base, base + 1], [ws_port, http_port]).start()
        oncall = {
            "ONCALL_WS_PORT": ws_port,
            "ONCALL_HTTP_PORT": http_port,
            "ONCALL_PROBE_ACCOUNTS_FILE": accounts,
            "ONCALL_REDIS_URL": redis_url,
            "ONCALL_COMPOSE_PROJECT": f"oncall-none-{ws_port}",  # not a Compose stack on this machine
        }
        yield backends, base, oncall
    finally:
        if nginx:
            nginx.stop()
        for backend in backends:
            backend.stop()
        drop()


def addresses(base):
    return [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]


def test_make_health_backends_checks_the_proxy_and_each_backend(scaled):
    backends, base, oncall = scaled
    done, seconds = make_health({**oncall, "BACKENDS": 2, "BACKEND_PORT_BASE": base})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ONCALL_BACKENDS=127.0.0.1:{base},127.0.0.1:{base + 1}" in done.stdout  # make's echo
    assert seconds < LIMIT, f"took {seconds:.1f}s"

    # A user request on each backend, so each has a 5xx ratio to show: which backend nginx
    # (least_conn) gives the checks' own logins depends on how many sockets they opened.
    user = json.loads(oncall["ONCALL_PROBE_ACCOUNTS_FILE"].read_text())[0]
    for address in addresses(base):
        ChatHTTP(f"http://{address}", timeout=10).login(user["username"], user["password"])
    run = fab("health", "--json", env={**oncall, "ONCALL_BACKENDS": ",".join(addresses(base))})
    assert run.code == 0, run
    checks = run.checks()
    for check in ("port-ws", "port-http", "liveness", "readiness", "ws-token", "ws-device", "ws-no-token", "redis"):
        assert checks[check]["status"] == "OK", checks[check]  # through the proxy
    assert str(oncall["ONCALL_WS_PORT"]) in checks["port-ws"]["text"]
    for address in addresses(base):
        backend, scraped = checks[f"backend:{address}"], checks[f"metrics:{address}"]
        assert backend["status"] == "OK" and "ready" in backend["text"], backend
        assert scraped["status"] == "OK" and "commit p99" in scraped["text"], scraped
        labels = {p["label"] for p in scraped["perfdata"]}
        assert f"local_backend_127_0_0_1_{address.split(':')[1]}_http_5xx_ratio" in labels, labels
    # The proxy's own ports are not scraped (nginx answers /metrics with 404).
    assert not any(name.startswith("metrics:") and name.endswith(f":{oncall['ONCALL_HTTP_PORT']}") for name in checks)
    assert run.seconds < LIMIT, run


def test_commit_time_over_its_threshold_is_a_warning_naming_it(scaled):
    """Messages sent through the proxy are committed by a backend; with commit_p99_warn_ms
    set below any real commit time that backend's metrics check warns."""
    backends, base, oncall = scaled
    users = json.loads(oncall["ONCALL_PROBE_ACCOUNTS_FILE"].read_text())
    http = ChatHTTP(f"http://127.0.0.1:{oncall['ONCALL_HTTP_PORT']}", timeout=10)
    sender, receiver = (http.login(u["username"], u["password"]) for u in users)
    ws_base = f"ws://127.0.0.1:{oncall['ONCALL_WS_PORT']}"
    with ChatSocket.open(room_url(ws_base, sender.user_id, receiver.user_id, sender.access), timeout=10) as room:
        for i in range(3):
            room.send_message(sender.user_id, receiver.user_id, f"scaled health {i}")
            room.recv_json(timeout=10)  # the echo: committed
    try:
        run = fab("health", "--json", env={**oncall, "ONCALL_BACKENDS": ",".join(addresses(base)),
                                           "ONCALL_METRICS_COMMIT_P99_WARN_MS": "0.0001"})
        assert run.code == 1, run
        warned = {name: r for name, r in run.checks().items() if r["status"] == "WARNING"}
        assert warned and all(name.startswith("metrics:127.0.0.1:") for name in warned), run
        assert all("commit_p99_warn_ms 0.0001" in r["text"] for r in warned.values()), warned
        assert "CHAT HEALTH WARNING" in run.json["summary"] and "commit_p99_warn_ms" in run.json["summary"]
        assert run.seconds < LIMIT, run
    finally:
        for session, other in ((sender, receiver), (receiver, sender)):
            http.clear_conversation(session, other.user_id)


def test_a_stopped_backend_is_critical_by_address_while_the_proxy_works(scaled):
    backends, base, oncall = scaled
    stopped, alive = addresses(base)[1], addresses(base)[0]
    backends[1].stop()
    try:
        run = fab("health", "--json", env={**oncall, "ONCALL_BACKENDS": ",".join(addresses(base))})
        assert run.code == 2, run
        checks = run.checks()
        assert checks[f"backend:{stopped}"]["status"] == "CRITICAL", checks
        assert f"backend {stopped} unreachable: connection refused" in checks[f"backend:{stopped}"]["text"]
        assert f"backend:{stopped}" in run.json["summary"]
        assert checks[f"backend:{alive}"]["status"] == "OK" and checks[f"metrics:{alive}"]["status"] == "OK"
        for check in ("port-ws", "port-http", "liveness", "readiness", "ws-token", "ws-device", "ws-no-token"):
            assert checks[check]["status"] == "OK", checks[check]  # nginx uses the other backend
        bad = [name for name, r in checks.items() if r["status"] not in ("OK",)]
        assert sorted(bad) == sorted([f"backend:{stopped}", f"metrics:{stopped}"]), bad
        assert run.seconds < LIMIT, run
    finally:
        backends[1].start()


def test_metrics_refused_by_the_proxy_say_what_to_do(scaled):
    """A "backend" that is really the proxy (nginx answers /metrics with 404): UNKNOWN with the
    way out, not a silent OK."""
    _, _, oncall = scaled
    proxy = f"127.0.0.1:{oncall['ONCALL_HTTP_PORT']}"
    run = fab("health", "--json", env={**oncall, "ONCALL_BACKENDS": proxy})
    assert run.code == 3, run
    checks = run.checks()
    assert checks[f"backend:{proxy}"]["status"] == "OK", checks
    scraped = checks[f"metrics:{proxy}"]
    assert scraped["status"] == "UNKNOWN" and "answered 404" in scraped["text"], scraped
    assert "ONCALL_METRICS_TOKEN" in scraped["text"]
