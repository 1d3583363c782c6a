#!/usr/bin/env bash
# Entry point of the postgres stand-in: the official image's interface, simplified.
# First start (no $PGDATA/PG_VERSION): initdb as POSTGRES_USER with POSTGRES_PASSWORD,
# allow password logins from anywhere (POSTGRES_HOST_AUTH_METHOD, default scram-sha-256),
# create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sh|*.sql, then exec the server.
set -o errexit -o pipefail -o nounset

if [ "$#" -eq 0 ] || [ "${1:0:1}" = "-" ]; then
    set -- postgres "$@"
fi

if [ "$1" != "postgres" ]; then
    exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = "0" ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chown postgres:postgres /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-}
POSTGRES_INITDB_ARGS=${POSTGRES_INITDB_ARGS:-}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    auth=${POSTGRES_HOST_AUTH_METHOD:-}
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != "trust" ]; then
        echo "Error: Database is uninitialized and superuser password is not specified." >&2
        echo "       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)." >&2
        exit 1
    fi
    : "${auth:=scram-sha-256}"
    echo "initializing database in $PGDATA"
    if [ -n "$POSTGRES_PASSWORD" ]; then
        # shellcheck disable=SC2086
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
            --auth-local=trust --auth-host="$auth" $POSTGRES_INITDB_ARGS
    else
        # shellcheck disable=SC2086
        initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth" $POSTGRES_INITDB_ARGS
    fi
    printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

    # A temporary server on the Unix socket only, for the one-time steps.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w -t 60 start
    export PGUSER="$POSTGRES_USER" PGHOST=/var/run/postgresql PGPORT="${PGPORT:-5432}"
    if [ "$POSTGRES_DB" != "postgres" ]; then
        psql -v ON_ERROR_STOP=1 --no-password --dbname postgres --set db="$POSTGRES_DB" \
            <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --no-password --dbname "$POSTGRES_DB" -f "$f" ;;
            *) [ -e "$f" ] && echo "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -t 60 stop
    unset PGUSER PGHOST
    echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
