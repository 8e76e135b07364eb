#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the shared-study sweep test (Debian's postgresql package).
#   .ci/postgres.sh start DIR   install the package if missing, start a cluster in DIR (Unix
#                               socket only, trust auth), print its URL
#   .ci/postgres.sh stop DIR    stop it and delete DIR
# As root the server runs as the `postgres` user the package creates (initdb refuses root).
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a folder for the cluster}
port=54329

bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
start)
  if [ -z "$(bin)" ]; then
    if [ "$(id -u)" != 0 ]; then echo "no PostgreSQL here and not root: cannot install it" >&2; exit 3; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  BIN=$(bin)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  chmod 700 "$dir"
  as_owner "$BIN/initdb" -D "$dir/data" -A trust -U tuitune >"$dir/initdb.log" 2>&1 \
    || { tail -1 "$dir/initdb.log" >&2; exit 1; }
  as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses=''" start >&2
  as_owner "$BIN/createdb" -h "$dir" -p "$port" -U tuitune tuitune_test
  echo "postgresql://tuitune@/tuitune_test?host=$dir&port=$port"
  ;;
stop)
  BIN=$(bin)
  if [ -n "$BIN" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  fi
  rm -rf "$dir"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
