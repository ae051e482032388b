#!/usr/bin/env bash
# The production layout as local processes: PgBouncer in transaction mode in front of
# PostgreSQL, two gateway instances of two workers each, one Prometheus scraping both
# with the shipped rules. What deploy/compose.yaml runs in containers.
#
#   deploy/local/fleet.sh up      migrate, start everything, wait until ready, print the URLs
#   deploy/local/fleet.sh status  the fleet as the gateway sees it (GET /admin/fleet)
#   deploy/local/fleet.sh down    stop everything it started, by PID
#
# Settings (environment):
#   FLEET_DATABASE_URL   direct PostgreSQL URL   [postgresql://postgres@127.0.0.1:5432/gateway_fleet]
#   FLEET_DIR            configs, logs, PIDs     [/tmp/gateway-fleet]
#   FLEET_PORTS          instance ports          ["8001 8002"]
#   FLEET_PGBOUNCER_PORT                         [6432]
#   FLEET_PROMETHEUS_PORT                        [9090]
#   FLEET_APP_MIGRATE    the app's migrations    ["python -m demo upgrade"]
#   FLEET_APP_SEED       data for a new database ["python -m demo seed"]; "" for none
#   GATEWAY_APP and any other GATEWAY_* setting pass through to the instances.
# Needs `gateway` and `python` of the gateway's environment on PATH, and the Debian
# packages pgbouncer and prometheus.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(dirname "$here")"
database_url="${FLEET_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/gateway_fleet}"
dir="${FLEET_DIR:-/tmp/gateway-fleet}"
ports="${FLEET_PORTS:-8001 8002}"
bouncer_port="${FLEET_PGBOUNCER_PORT:-6432}"
prometheus_port="${FLEET_PROMETHEUS_PORT:-9090}"
app_migrate="${FLEET_APP_MIGRATE:-python -m demo upgrade}"
app_seed="${FLEET_APP_SEED-python -m demo seed}"
admin_token="${FLEET_ADMIN_TOKEN:-fleet-admin-token}"

# host, port, user and database of the direct URL
read -r db_host db_port db_user db_name < <(python - "$database_url" <<'EOF'
import sys
from sqlalchemy import make_url
url = make_url(sys.argv[1])
print(url.host or "127.0.0.1", url.port or 5432, url.username or "postgres", url.database)
EOF
)
pooled_url="postgresql://${db_user}@127.0.0.1:${bouncer_port}/${db_name}"

wait_for() {  # url, seconds
  local deadline=$((SECONDS + $2))
  until python -c "import sys, httpx; sys.exit(httpx.get(sys.argv[1]).status_code != 200)" "$1" 2>/dev/null; do
    if ((SECONDS > deadline)); then echo "no answer from $1 within $2 s; logs in $dir" >&2; return 1; fi
    sleep 0.5
  done
}

create_database() {
  python - "$database_url" <<'EOF'
import sys
import psycopg
from psycopg import sql
from sqlalchemy import make_url
url = make_url(sys.argv[1])
server = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
with psycopg.connect(server, autocommit=True) as connection:
    if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
EOF
}

start_pgbouncer() {
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$db_host port=$db_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
server_reset_query =
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
  echo "\"$db_user\" \"\"" >"$dir/userlist.txt"
  local as_user=()
  if [ "$(id -u)" = 0 ]; then  # PgBouncer will not run as root
    chown -R postgres "$dir"
    as_user=(--user=postgres)
  fi
  pgbouncer --daemon "${as_user[@]}" "$dir/pgbouncer.ini"
}

start_instance() {  # name, port
  GATEWAY_DATABASE_URL="$pooled_url" \
  GATEWAY_TRANSACTION_POOLING=true \
  GATEWAY_LISTEN_DATABASE_URL="$database_url" \
  GATEWAY_INSTANCE_NAME="$1" \
  GATEWAY_PORT="$2" \
  GATEWAY_WORKERS="${GATEWAY_WORKERS:-2}" \
  GATEWAY_LOG_FORMAT="${GATEWAY_LOG_FORMAT:-json}" \
  GATEWAY_ADMIN_TOKENS="{\"ops\": \"$admin_token\"}" \
    nohup gateway serve >"$dir/gateway-$1.log" 2>&1 &
  echo $! >"$dir/gateway-$1.pid"
}

start_prometheus() {
  python - "$deploy/prometheus.yml" "$dir/prometheus.yml" $ports <<'EOF'
import pathlib, sys
import yaml
source, target, *ports = sys.argv[1:]
config = yaml.safe_load(pathlib.Path(source).read_text())
config["global"] = {"scrape_interval": "5s", "evaluation_interval": "5s"}  # quick, locally
config["rule_files"] = [str(pathlib.Path(source).parent / rules) for rules in config["rule_files"]]
config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in ports]}]
pathlib.Path(target).write_text(yaml.safe_dump(config))
EOF
  nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --web.listen-address="127.0.0.1:$prometheus_port" >"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/prometheus.pid"
}

up() {
  mkdir -p "$dir"
  create_database
  GATEWAY_DATABASE_URL="$database_url" gateway db upgrade
  GATEWAY_DATABASE_URL="$database_url" $app_migrate
  if [ -n "$app_seed" ]; then
    GATEWAY_DATABASE_URL="$database_url" $app_seed || echo "not seeded: the database has data"
  fi
  start_pgbouncer
  local name=a
  for port in $ports; do
    start_instance "$name" "$port"
    name=$(echo "$name" | tr 'a-y' 'b-z')
  done
  start_prometheus
  for port in $ports; do wait_for "http://127.0.0.1:$port/readyz" 60; done
  wait_for "http://127.0.0.1:$prometheus_port/-/ready" 30
  echo "instances:  $(for port in $ports; do printf 'http://127.0.0.1:%s ' "$port"; done)"
  echo "PgBouncer:  $pooled_url (transaction mode)"
  echo "Prometheus: http://127.0.0.1:$prometheus_port"
  echo "admin:      Authorization: Bearer $admin_token"
}

status() {
  local first
  first=$(echo "$ports" | cut -d' ' -f1)
  python - "http://127.0.0.1:$first/admin/fleet" "$admin_token" <<'EOF'
import json, sys
import httpx
print(json.dumps(httpx.get(sys.argv[1], headers={"authorization": f"Bearer {sys.argv[2]}"}).json(), indent=2))
EOF
}

stop_pid() {  # pidfile
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

down() {
  for pidfile in "$dir"/gateway-*.pid "$dir/prometheus.pid" "$dir/pgbouncer.pid"; do
    stop_pid "$pidfile"
  done
  echo "stopped; logs kept in $dir"
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
