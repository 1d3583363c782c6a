#!/bin/sh
# The proxy of the scaled Compose stack (compose.yaml, service `proxy`; docs/docker.md):
# habitto-chat.conf of this folder with only the upstream servers (the BACKENDS replica
# ports from BACKEND_PORT_BASE) and the listen addresses (127.0.0.1 on BACKEND_WS_PORT and
# BACKEND_HTTP_PORT) substituted, then nginx in the foreground. POSIX sh and awk only.
set -eu
: "${BACKENDS:?}" "${BACKEND_PORT_BASE:?}" "${BACKEND_WS_PORT:?}" "${BACKEND_HTTP_PORT:?}"
here=$(dirname "$0")
out=/etc/nginx/conf.d/habitto-chat.conf

awk -v base="$BACKEND_PORT_BASE" -v count="$BACKENDS" -v ws="$BACKEND_WS_PORT" -v http="$BACKEND_HTTP_PORT" '
    /^[ \t]*server 127\.0\.0\.1:[0-9]+;/ {
        if (!listed) for (p = base; p < base + count; p++) printf "    server 127.0.0.1:%d;\n", p
        listed = 1
        next
    }
    /^[ \t]*listen 80;/ {
        printf "    listen 127.0.0.1:%d;\n    listen 127.0.0.1:%d;\n", ws, http
        listened = 1
        next
    }
    { print }
    END { if (!listed || !listened) { print "habitto-chat.conf: no upstream servers or no listen 80 to replace" > "/dev/stderr"; exit 1 } }
' "$here/habitto-chat.conf" >"$out"

# The official image's default server listens on port 80: on the host network that would
# be the host's port 80.
rm -f /etc/nginx/conf.d/default.conf
echo "proxy: 127.0.0.1:$BACKEND_WS_PORT and :$BACKEND_HTTP_PORT -> $BACKENDS backends from 127.0.0.1:$BACKEND_PORT_BASE"
nginx -t
exec nginx -g 'daemon off;'
