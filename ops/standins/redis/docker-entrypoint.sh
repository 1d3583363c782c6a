#!/usr/bin/env bash
# Entry point of the redis stand-in, as the official image's: options alone go to
# redis-server, which drops root for the redis user and writes to /data.
set -o errexit -o pipefail -o nounset

if [ "$#" -eq 0 ] || [ "${1:0:1}" = "-" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = "redis-server" ] && [ "$(id -u)" = "0" ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
fi

umask 0077
exec "$@"
