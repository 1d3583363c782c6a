#!/usr/bin/env bash
# Backend container: serve HTTP and WebSocket on $PORTS (one uvicorn process).
# Settings come from the environment only (compose.yaml, .env.example).
set -o errexit -o pipefail -o nounset
cd /app
if [ -n "${PORT_BASE:-}" ]; then  # one replica of the scaled stack (compose.yaml, `backend`)
    echo "habitto-chat: serving on ${HOST:-0.0.0.0} the first free port of ${PORT_BASE}+${PORT_COUNT:-1} (DEBUG=${DEBUG:-0})"
else
    echo "habitto-chat: serving on ${HOST:-0.0.0.0} ports ${PORTS:-8000} (DEBUG=${DEBUG:-0})"
fi
exec python -m habitto_server.serve --host "${HOST:-0.0.0.0}" --ports "${PORTS:-8000}" "$@"
