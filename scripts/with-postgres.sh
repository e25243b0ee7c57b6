#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster on loopback, on a port of its own, and
# stops and removes the cluster afterwards (also on failure or Ctrl-C). The command sees the
# server's URL in ONCELY_POSTGRES_URL, and in ONCELY_POSTGRES_PGCTL a pg_ctl command line for the
# cluster without its action (the fault test appends `-m immediate -w restart` to crash and
# restart the server).
#
#   scripts/with-postgres.sh make test-all
#
# The server comes from Debian's `postgresql` package: under CI (CI=true) it is installed with
# apt when missing; elsewhere a missing server is a loud message, and the command runs without
# ONCELY_POSTGRES_URL (the PostgreSQL tests then skip, saying so — except under CI, where they
# fail).
set -euo pipefail

find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

bindir=$(find_bindir || true)
if [ -z "$bindir" ] && [ "${CI:-}" = "true" ]; then
    echo "== installing PostgreSQL (apt)"
    export DEBIAN_FRONTEND=noninteractive
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq postgresql >/dev/null
    bindir=$(find_bindir || true)
fi
# The clock-skew test runs processes under libfaketime (Debian's faketime) against this server.
if [ "${CI:-}" = "true" ] && [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
    echo "== installing faketime (apt)"
    export DEBIAN_FRONTEND=noninteractive
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq faketime >/dev/null
fi
if [ -z "$bindir" ]; then
    echo "!! PostgreSQL server not found (no /usr/lib/postgresql/*/bin/initdb): the PostgreSQL tests" >&2
    echo "!! will SKIP. Install it with: apt-get install postgresql" >&2
    exec "$@"
fi

port=${ONCELY_POSTGRES_PORT:-54329}
dir=$(mktemp -d /tmp/oncely-pg.XXXXXX)
run_as=()
if [ "$(id -u)" = 0 ]; then
    # initdb and postgres refuse to run as root.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    run_as=(runuser -u postgres --)
fi

stop() {
    "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT INT TERM

"${run_as[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U oncely --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
# Many worker processes each keep a small pool: allow enough connections.
"${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
echo "== PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (throwaway cluster in $dir)"

export ONCELY_POSTGRES_URL="postgres://oncely@127.0.0.1:$port/postgres"
export ONCELY_POSTGRES_PGCTL="${run_as[*]} $bindir/pg_ctl -D $dir/data -l $dir/server.log"
set +e
"$@"
status=$?
set -e
exit $status
