#!/bin/sh
# The official image's contract, in short: POSTGRES_USER (default postgres), POSTGRES_PASSWORD
# (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default the user's name), and
# the *.sql files of /docker-entrypoint-initdb.d run (as that user, in name order) on the first
# start of an empty data directory.
set -eu
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
if [ "$method" != trust ] && [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
fi
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # initdb refuses an empty password file: with trust and no password, the user gets none.
    password_file=$(mktemp)
    printf '%s' "${POSTGRES_PASSWORD:-}" > "$password_file"
    chown postgres "$password_file"
    password_option="--pwfile=$password_file"
    [ -n "${POSTGRES_PASSWORD:-}" ] || password_option=
    as_postgres initdb --username="$user" $password_option --auth-local=trust \
        --auth-host="$method" --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" > /dev/null
    rm -f "$password_file"
    echo "host all all all $method" >> "$PGDATA/pg_hba.conf"
    if [ "$database" != postgres ]; then
        as_postgres postgres --single -D "$PGDATA" -c listen_addresses='' postgres <<SQL > /dev/null
CREATE DATABASE "$database";
SQL
    fi
    if ls /docker-entrypoint-initdb.d/*.sql > /dev/null 2>&1; then
        # A server on the socket only, for the scripts, stopped before the real start.
        as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start > /dev/null
        for script in /docker-entrypoint-initdb.d/*.sql; do
            echo "running $script"
            as_postgres psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres -h /var/run/postgresql -q -f "$script"
        done
        as_postgres pg_ctl -D "$PGDATA" -m fast -w stop > /dev/null
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' "$@"
