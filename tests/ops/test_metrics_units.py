"""The metrics thresholds computed from scrape texts, the backend settings, and the
discovery of the scaled Compose stack's backends with a fake Docker client (no server,
no Docker)."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ops.oncall import config, metrics
from ops.oncall.checks import HostContext
from ops.oncall.docker_checks import compose_services, discover_backends
from ops.oncall.results import Status
from ops.oncall.targets import LocalTarget

THRESHOLDS = dict(config.DEFAULT_METRICS)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)  # habitto_chat.metrics


class Backend:
    """A registry shaped like a backend's: the series the thresholds read, made by
    prometheus_client itself so the text is exactly what /metrics serves."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.commit = Histogram("habitto_chat_batch_commit_seconds", "", buckets=COMMIT_BUCKETS, registry=self.registry)
        self.responses = Counter("habitto_http_responses_total", "", ["route", "status"], registry=self.registry)
        self.publish_errors = Counter("habitto_chat_layer_publish_errors_total", "", registry=self.registry)
        self.receive_errors = Counter("habitto_chat_layer_receive_errors_total", "", registry=self.registry)
        Counter("habitto_chat_messages_stored_total", "", registry=self.registry).inc(5)  # not read

    def commits(self, seconds, times=1):
        for _ in range(times):
            self.commit.observe(seconds)
        return self

    def answer(self, route, status, times=1):
        self.responses.labels(route, str(status)).inc(times)
        return self

    def scrape(self):
        return metrics.parse(generate_latest(self.registry).decode())


def readings(first, second=None, **thresholds):
    found = metrics.judge(first, second, {**THRESHOLDS, **thresholds}, 2.0 if second else None)
    return {r.name: r for r in found}


def test_quantile_interpolates_like_histogram_quantile():
    # 100 observations: 50 in (0, 0.01], 40 in (0.01, 0.1], 10 in (0.1, 1]
    buckets = {0.01: 50, 0.1: 90, 1.0: 100, float("inf"): 100}
    assert metrics.quantile(0.5, buckets) == pytest.approx(0.01)
    assert metrics.quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 9 / 10)
    assert metrics.quantile(0.25, buckets) == pytest.approx(0.005)  # the lowest bucket starts at 0
    # a rank in +Inf gives the highest finite bound; no observations: no value
    assert metrics.quantile(0.99, {0.25: 1, float("inf"): 10}) == 0.25
    assert metrics.quantile(0.99, {0.25: 0, float("inf"): 0}) is None


def test_commit_p99_is_judged_on_the_window_between_the_scrapes():
    backend = Backend().commits(0.8, times=100)  # slow commits long ago
    first = backend.scrape()
    second = backend.commits(0.003, times=20).scrape()  # fast ones now
    commit = readings(first, second)["commit_p99_warn_ms"]
    assert commit.status == Status.OK and commit.value == pytest.approx(2.5 + 2.5 * 19.8 / 20)  # rank 19.8 of 20 in (2.5, 5] ms
    assert "last 2.0 s, 20 batches" in commit.text
    # the same process judged on its lifetime would warn
    lifetime = readings(second)["commit_p99_warn_ms"]
    assert lifetime.status == Status.WARNING and "since start" in lifetime.text


def test_without_batches_in_the_window_commit_p99_falls_back_to_lifetime():
    backend = Backend().commits(0.3, times=10)
    first = backend.scrape()
    commit = readings(first, backend.scrape())["commit_p99_warn_ms"]
    assert commit.status == Status.WARNING
    # rank 9.9 of 10 in the (250, 500] ms bucket: 250 + 250 * 0.99
    assert commit.text == "commit p99 497.5 ms (since start, 10 batches) > commit_p99_warn_ms 250", commit.text
    idle = readings(Backend().scrape(), Backend().scrape())["commit_p99_warn_ms"]
    assert idle.status == Status.OK and idle.value is None and "no batch committed yet" in idle.text


def test_5xx_ratio_leaves_out_the_monitoring_routes():
    backend = Backend().answer("api/login/", 200, 50).answer("readyz", 503, 30).answer("healthz", 200, 100)
    first = backend.scrape()
    quiet = readings(first, backend.scrape())["http_5xx_ratio_warn"]  # no traffic: lifetime
    assert quiet.status == Status.OK and quiet.value == 0 and "of 50 responses (since start)" in quiet.text
    second = backend.answer("api/messages/thread/", 500, 2).answer("api/messages/thread/", 200, 98).scrape()
    failing = readings(first, second)["http_5xx_ratio_warn"]
    assert failing.status == Status.WARNING and failing.value == pytest.approx(0.02)
    assert "5xx 2.0% of 100 responses (last 2.0 s) > http_5xx_ratio_warn 0.01" == failing.text
    assert readings(first, second, http_5xx_ratio_warn=0.05)["http_5xx_ratio_warn"].status == Status.OK
    assert readings(Backend().scrape())["http_5xx_ratio_warn"].value is None


def test_layer_errors_count_only_new_ones():
    backend = Backend()
    backend.publish_errors.inc(3)  # a Redis outage the process recovered from
    first = backend.scrape()
    old = readings(first, backend.scrape())["layer_errors_warn"]
    assert old.status == Status.OK and old.value == 0 and "3 since start" in old.text
    backend.receive_errors.inc()
    new = readings(first, backend.scrape())["layer_errors_warn"]
    assert new.status == Status.WARNING and new.value == 1
    assert "layer errors 1 new (last 2.0 s; 4 since start) >= layer_errors_warn 1" == new.text
    assert readings(first, backend.scrape(), layer_errors_warn=2)["layer_errors_warn"].status == Status.OK


def test_a_restart_between_the_scrapes_uses_the_second_alone():
    old = Backend().commits(0.002, times=50).answer("api/login/", 200, 10)
    old.publish_errors.inc(5)
    restarted = Backend().commits(0.4, times=2)
    found = readings(old.scrape(), restarted.scrape())
    assert found["layer_errors_warn"].value is None and "restarted" in found["layer_errors_warn"].text
    assert found["commit_p99_warn_ms"].status == Status.WARNING and "since start, 2 batches" in found["commit_p99_warn_ms"].text
    one = readings(old.scrape())["layer_errors_warn"]
    assert one.value is None and "one scrape only; 5 since start" in one.text


def test_perfdata_and_bad_text():
    backend = Backend().commits(0.02, times=4).answer("api/login/", 200)
    found = metrics.judge(backend.scrape(), backend.scrape(), THRESHOLDS, 2.0)
    rendered = [p.render() for p in metrics.perfdata("local_backend_127_0_0_1_18100", found, THRESHOLDS)]
    assert rendered == ["'local_backend_127_0_0_1_18100_commit_p99'=24.85ms;250;;0",  # 10 + 15 * 3.96 / 4
                        "'local_backend_127_0_0_1_18100_http_5xx_ratio'=0;0.01;;0;1",
                        "'local_backend_127_0_0_1_18100_layer_errors'=0;1;;0"]
    with pytest.raises(metrics.MetricsFormatError):
        metrics.parse("<html>Not Found</html>\n")


def test_backend_and_metrics_settings():
    cfg = config.load({"backends": ["127.0.0.1:18100"], "metrics": {"interval": 1}},
                      env={"ONCALL_BACKENDS": "127.0.0.1:18100, 10.0.0.5:18101",
                           "ONCALL_METRICS_COMMIT_P99_WARN_MS": "100", "ONCALL_METRICS_TOKEN": "t" * 40})
    assert cfg.backends == (("127.0.0.1", 18100), ("10.0.0.5", 18101))
    assert cfg.metrics == {**THRESHOLDS, "commit_p99_warn_ms": 100.0, "interval": 1.0}
    shown = cfg.redacted()
    assert shown["backends"] == ["127.0.0.1:18100", "10.0.0.5:18101"] and shown["metrics_token"] == "***"
    assert "t" * 40 not in repr(cfg)
    assert config.load(None, env={}).backends == ()
    for env, message in [
        ({"ONCALL_BACKENDS": "18100"}, "each backend must be host:port, got '18100'"),
        ({"ONCALL_BACKENDS": "127.0.0.1:99999"}, "between 1 and 65535"),
        ({"ONCALL_METRICS_HTTP_5XX_RATIO_WARN": "-1"}, "metrics.http_5xx_ratio_warn must not be negative"),
    ]:
        with pytest.raises(config.ConfigError, match=message):
            config.load(None, env=env)
    with pytest.raises(config.ConfigError, match="unknown metrics setting 'p95'"):
        config.load({"metrics": {"p95": 1}}, env={})


class FakeContainer:
    def __init__(self, service, state="running", status="Up 2 minutes (healthy)", oneoff=False, number=1):
        self.short_id = f"{service}{number}"
        labels = {"com.docker.compose.project": "habitto-chat", "com.docker.compose.service": service,
                  "com.docker.compose.container-number": str(number)}
        if oneoff:
            labels["com.docker.compose.oneoff"] = "True"
        self.attrs = {"Labels": labels, "State": state, "Status": status}
        self.status = state

    def reload(self):  # what an inspect of an exited container gives
        self.attrs = {"Config": {"Labels": self.attrs["Labels"]}, "State": {"Status": "exited", "ExitCode": 137},
                      "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}}}


class FakeClient:
    """The part of docker.DockerClient the checks use: containers.list(...)."""

    def __init__(self, containers):
        self.listed = []
        self.containers = self
        self._containers = containers

    def list(self, **kwargs):
        self.listed.append(kwargs)
        return self._containers


def context(**settings):
    cfg = config.load({"compose_project": "habitto-chat", **settings}, env={})
    return HostContext(cfg, LocalTarget())


def test_discovery_counts_the_backend_containers_of_the_project():
    client = FakeClient([
        FakeContainer("backend", number=1), FakeContainer("backend", number=2),
        FakeContainer("backend", state="exited", status="Exited (137) 5 seconds ago", number=3),  # down: still checked
        FakeContainer("backend", oneoff=True),  # `docker compose run backend ...`
        FakeContainer("proxy"), FakeContainer("redis"),
    ])
    ctx = context(backend_port_base=18100)
    assert discover_backends(ctx, client) == (("127.0.0.1", 18100), ("127.0.0.1", 18101), ("127.0.0.1", 18102))
    assert client.listed == [{"all": True, "sparse": True, "filters": {"label": "com.docker.compose.project=habitto-chat"}}]
    # The compose check of the same run uses that listing instead of asking again.
    results = {r.check: r for r in compose_services(ctx)}
    assert results["compose:backend"].status == Status.CRITICAL and "exit code 137" in results["compose:backend"].text
    assert set(results) == {"compose:backend", "compose:proxy", "compose:redis"} and len(client.listed) == 1


def test_no_discovery_without_backend_containers_or_when_turned_off():
    assert discover_backends(context(), FakeClient([FakeContainer("backend-ws"), FakeContainer("backend-http")])) == ()
    assert discover_backends(context(), FakeClient([])) == ()
    assert discover_backends(context(backend_service=""), FakeClient([FakeContainer("backend")])) == ()
    assert discover_backends(context(backend_service="api", backend_port_base=19000),
                             FakeClient([FakeContainer("api")])) == (("127.0.0.1", 19000),)
