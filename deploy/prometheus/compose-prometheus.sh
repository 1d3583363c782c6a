#!/bin/sh
# Prometheus of the Compose stack's `monitoring` profile (compose.yaml; docs/metrics.md):
# writes its configuration from the environment, then runs Prometheus on
# 127.0.0.1:PROMETHEUS_PORT. Targets: every backend process's own port (loopback, which
# /metrics allows) - BACKEND_WS_PORT and BACKEND_HTTP_PORT (two processes) in the default
# stack, BACKEND_PORT_BASE .. +BACKENDS-1 in the scaled one (BACKENDS > 1), never the proxy.
# POSIX sh only: the official image has busybox's, the stand-in Debian's dash.
set -eu
: "${BACKENDS:?}" "${BACKEND_PORT_BASE:?}" "${BACKEND_WS_PORT:?}" "${BACKEND_HTTP_PORT:?}" "${PROMETHEUS_PORT:?}"
here=$(dirname "$0")
config=/prometheus/habitto-prometheus.yml  # the data volume: writable by nobody in any image

if [ "$BACKENDS" -gt 1 ]; then
    targets="" i=0
    while [ "$i" -lt "$BACKENDS" ]; do
        targets="$targets${targets:+, }\"127.0.0.1:$((BACKEND_PORT_BASE + i))\""
        i=$((i + 1))
    done
else
    targets="\"127.0.0.1:$BACKEND_WS_PORT\", \"127.0.0.1:$BACKEND_HTTP_PORT\""
fi

cat >"$config" <<YAML
global:
  scrape_interval: 10s
  evaluation_interval: 10s
rule_files:
  - $here/rules.yml
scrape_configs:
  - job_name: habitto-chat
    static_configs:
      - targets: [$targets]
YAML
echo "prometheus: scraping $targets, rules $here/rules.yml, on 127.0.0.1:$PROMETHEUS_PORT"
exec /bin/prometheus --config.file="$config" --storage.tsdb.path=/prometheus \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" "$@"
