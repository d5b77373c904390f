#!/bin/sh
# Entrypoint of the PostgreSQL stand-in: the official postgres image's interface, our own code.
#
# On the first start, when PGDATA holds no cluster yet:
#   * PGDATA is created with mode 0700 if missing (its parent must be writable by 999, e.g. a
#     volume root made group-writable by fsGroup, with PGDATA=/var/lib/postgresql/data/pgdata);
#   * initdb makes POSTGRES_USER (default postgres) the superuser with the password from
#     POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (one of them is required);
#   * TCP connections from anywhere need that password (scram-sha-256), the server listens on all
#     addresses; the Unix socket inside the container is trusted, as in the official image;
#   * POSTGRES_DB (default: the user's name) is created, on a server reachable only through the
#     socket while it runs, so nothing connects before the database exists.
# Later starts leave the cluster as it is (a changed password variable changes nothing).
# Then `exec postgres`: the server is PID 1 and shuts down cleanly on SIGTERM or SIGINT itself.
# Not carried over from the official image: /docker-entrypoint-initdb.d scripts,
# POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD and starting as root.
set -eu

die() { echo "docker-entrypoint.sh: $*" >&2; exit 1; }

read_password() {
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    [ -z "${POSTGRES_PASSWORD:-}" ] || die "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both"
    [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE: cannot read $POSTGRES_PASSWORD_FILE"
    password=$(cat "$POSTGRES_PASSWORD_FILE")
  else
    password=${POSTGRES_PASSWORD:-}
  fi
  [ -n "$password" ] || die "PGDATA holds no cluster and no superuser password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
}

init_cluster() {
  user=${POSTGRES_USER:-postgres}
  database=${POSTGRES_DB:-$user}
  read_password
  # 0700 for PGDATA itself (initdb insists); parents, if any are missing, get the default mode.
  mkdir -p "$PGDATA" && chmod 0700 "$PGDATA"
  # The password goes through a pipe, never the command line (visible in ps) or a file.
  printf '%s\n' "$password" | initdb --username="$user" --pwfile=/dev/stdin \
    --auth-local=trust --auth-host=scram-sha-256
  {
    echo
    echo "# docker-entrypoint.sh: every other host, with the password"
    echo "host all all all scram-sha-256"
  } >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$database" != postgres ]; then
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
    createdb --username="$user" -- "$database"
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  fi
  echo "docker-entrypoint.sh: cluster initialized in $PGDATA (user $user, database $database)"
}

case "${1:-}" in
  -*) set -- postgres "$@" ;;  # `docker run IMAGE -c key=value`
esac

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  init_cluster
fi
unset POSTGRES_PASSWORD
exec "$@"
