#!/usr/bin/env bash
# Starts the local services the tests use (PostgreSQL 15 and Redis on loopback) and exports their addresses.
# Sourced by .ci/run; safe to source again (a running server is reused).
set -u
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)  # report render test
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need_apt[*]}; their tests will be skipped"
fi

PG_PORT=${DEEPQ_PG_PORT:-55432}
REDIS_PORT=${DEEPQ_REDIS_PORT:-56379}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_DIR=${DEEPQ_PG_DIR:-/tmp/deepq-pg}

if [ -n "$PG_BIN" ]; then
  if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    mkdir -p "$PG_DIR" && chown postgres "$PG_DIR" 2>/dev/null || true
    if [ ! -f "$PG_DIR/PG_VERSION" ]; then
      su postgres -c "$PG_BIN/initdb -D $PG_DIR -A trust -U postgres" >/dev/null
    fi
    su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR -l $PG_DIR/log -o '-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1' -w start" >/dev/null
  fi
  export DEEPQ_PG_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
fi
if command -v redis-server >/dev/null; then
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  export DEEPQ_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi
