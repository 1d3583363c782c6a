"""The Prometheus rules of the monitoring profile (deploy/prometheus/rules.yml) alert on the
same numbers the on-call checks use (fabric.yml, `oncall.metrics`); the configuration its
start script writes scrapes each backend process of the stack's layout; the proxy of the
scaled stack renders deploy/nginx/habitto-chat.conf with only its ports changed. No Docker:
the start scripts' rendering parts run under sh (tests/compose/test_scaled_stack.py runs
them for real)."""

import os
import re
import subprocess

import yaml

from tests.support.live import REPO_DIR

RULES = REPO_DIR / "deploy" / "prometheus" / "rules.yml"
MONITORING_ROUTES = 'route!~"healthz|readyz|metrics"'


def alerts():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def recording_rules():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"]: rule["expr"] for group in groups for rule in group["rules"] if "record" in rule}


def threshold(expr, series, operator=">"):
    """The number `series <operator> N` compares with (the on-call checks: WARNING above the
    commit and 5xx thresholds, at or above the layer-errors one)."""
    match = re.fullmatch(rf"\s*{re.escape(series)}\s*{re.escape(operator)}\s*([0-9.]+)\s*", expr)
    assert match, expr
    return float(match.group(1))


def test_alerts_use_the_thresholds_of_fabric_yml():
    metrics = yaml.safe_load((REPO_DIR / "fabric.yml").read_text())["oncall"]["metrics"]
    rules = alerts()
    assert threshold(rules["HabittoCommitSlow"]["expr"], "habitto:batch_commit_seconds:p99_5m") == \
        metrics["commit_p99_warn_ms"] / 1000
    assert threshold(rules["HabittoServerErrors"]["expr"], "habitto:http_5xx:ratio_5m") == \
        metrics["http_5xx_ratio_warn"]
    assert threshold(rules["HabittoChannelLayerFailing"]["expr"], "habitto:layer_errors:increase_5m", ">=") == \
        metrics["layer_errors_warn"]


def test_recording_rules_measure_what_the_checks_measure():
    records = recording_rules()
    assert "histogram_quantile(0.99," in records["habitto:batch_commit_seconds:p99_5m"]
    assert "habitto_chat_batch_commit_seconds_bucket" in records["habitto:batch_commit_seconds:p99_5m"]
    # The 5xx share of user traffic: health checks and scrapes left out, above and below the line.
    ratio = records["habitto:http_5xx:ratio_5m"]
    assert ratio.count(MONITORING_ROUTES) == 2 and 'status=~"5.."' in ratio
    errors = records["habitto:layer_errors:increase_5m"]
    assert "habitto_chat_layer_publish_errors_total" in errors and "habitto_chat_layer_receive_errors_total" in errors
    assert alerts()["HabittoBackendDown"]["expr"] == 'up{job="habitto-chat"} == 0'


def test_proxy_config_is_the_tested_nginx_file_with_other_ports(tmp_path):
    """compose-proxy.sh changes the upstream servers and the listen address, nothing else."""
    folder = tmp_path / "habitto"
    folder.mkdir()
    source = (REPO_DIR / "deploy" / "nginx" / "habitto-chat.conf").read_text()
    (folder / "habitto-chat.conf").write_text(source)
    output = tmp_path / "out.conf"
    script = (REPO_DIR / "deploy" / "nginx" / "compose-proxy.sh").read_text()
    # Render only (the script up to its awk command), into a file of this test.
    render_end = '"$here/habitto-chat.conf" >"$out"\n'
    assert render_end in script
    script = script.replace("/etc/nginx/conf.d/habitto-chat.conf", str(output)).split(render_end)[0] + render_end
    (folder / "render.sh").write_text(script)
    env = {**os.environ, "BACKENDS": "3", "BACKEND_PORT_BASE": "18100", "BACKEND_WS_PORT": "8000",
           "BACKEND_HTTP_PORT": "8001"}
    result = subprocess.run(["sh", str(folder / "render.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    rendered = output.read_text()
    expected = source.replace(
        "    server 127.0.0.1:8000;\n    server 127.0.0.1:8001;\n",
        "    server 127.0.0.1:18100;\n    server 127.0.0.1:18101;\n    server 127.0.0.1:18102;\n")
    expected = re.sub(r"    listen 80;.*\n", "    listen 127.0.0.1:8000;\n    listen 127.0.0.1:8001;\n", expected)
    assert expected != source
    assert rendered == expected


def rendered_prometheus_config(tmp_path, **env):
    """The configuration deploy/prometheus/compose-prometheus.sh writes (Prometheus itself not started)."""
    config = tmp_path / "prometheus.yml"
    script = (REPO_DIR / "deploy" / "prometheus" / "compose-prometheus.sh").read_text()
    start = "\nexec /bin/prometheus "
    assert "config=/prometheus/habitto-prometheus.yml" in script and start in script
    script = script.replace("config=/prometheus/habitto-prometheus.yml", f"config={config}").split(start)[0] + "\n"
    (tmp_path / "render.sh").write_text(script)
    defaults = {"BACKEND_PORT_BASE": "18100", "BACKEND_WS_PORT": "8000", "BACKEND_HTTP_PORT": "8001",
                "PROMETHEUS_PORT": "19090"}
    result = subprocess.run(["sh", str(tmp_path / "render.sh")], env={**os.environ, **defaults, **env},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(config.read_text())


def test_prometheus_scrapes_each_backend_process_of_the_layout(tmp_path):
    for backends, targets in (("1", ["127.0.0.1:8000", "127.0.0.1:8001"]),
                              ("3", ["127.0.0.1:18100", "127.0.0.1:18101", "127.0.0.1:18102"])):
        config = rendered_prometheus_config(tmp_path, BACKENDS=backends)
        (job,) = config["scrape_configs"]
        assert job["job_name"] == "habitto-chat"  # the job HabittoBackendDown watches
        assert job["static_configs"] == [{"targets": targets}], backends
        assert config["rule_files"] == [str(tmp_path / "rules.yml")]  # beside the script: deploy/prometheus/
