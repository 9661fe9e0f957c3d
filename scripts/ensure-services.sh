#!/usr/bin/env bash
# Makes sure the backing services for tests and benchmarks are listening:
#
#   PostgreSQL  127.0.0.1:$PG_PORT (5432)       user postgres, trust auth over TCP
#   NATS        127.0.0.1:$NATS_PORT (4222)     with JetStream
#   RabbitMQ    127.0.0.1:$RABBITMQ_PORT (5672) guest/guest, only with --bench
#   chromium    installed (not a daemon) for the web admin page tests
#   xsltproc, xmllint  installed: the compliance service's XSLT processor, and
#               the XSD validator its tests check every export with
#
# Whatever already listens on a port is reused. Otherwise an installed service
# is started directly (no systemd needed), and a missing one is installed with
# apt-get first (Debian 12). Prints nothing when everything is already up.
#
# Usage: scripts/ensure-services.sh [--bench]
#
# Environment (defaults in brackets):
#   PG_PORT [5432]  NATS_PORT [4222]  RABBITMQ_PORT [5672]
#   NATS_STORE_DIR [/var/lib/nats-server]  NATS_LOG [/var/log/nats-server.log]
#   SERVICES_WAIT_SECONDS [60]     how long to wait for PostgreSQL and NATS
#   RABBITMQ_WAIT_SECONDS [180]    how long to wait for RabbitMQ
#   PARLEY_PG_TRUST=1              allow switching an existing local cluster's
#                                  127.0.0.1 rule in pg_hba.conf to trust (done
#                                  without asking for a cluster installed here)
set -euo pipefail

HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
NATS_PORT=${NATS_PORT:-4222}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
NATS_STORE_DIR=${NATS_STORE_DIR:-/var/lib/nats-server}
NATS_LOG=${NATS_LOG:-/var/log/nats-server.log}
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-60}
RABBITMQ_WAIT_SECONDS=${RABBITMQ_WAIT_SECONDS:-180}
PARLEY_PG_TRUST=${PARLEY_PG_TRUST:-0}

me="ensure-services"
say() { echo "$me: $*"; }
die() { echo "$me: error: $*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

want_rabbitmq=0
for arg in "$@"; do
  case $arg in
    --bench) want_rabbitmq=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (usage: $0 [--bench])" ;;
  esac
done

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
as_root() {
  if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
    die "need root (or passwordless sudo) to run: $*"
  fi
  "${SUDO[@]}" "$@"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

show_log() {
  if [ -n "$1" ] && [ -f "$1" ] && [ -r "$1" ]; then tail -n 20 "$1" >&2 || true; fi
}

# wait_port NAME PORT SECONDS [CHECK_ALIVE_FN] [LOG]
wait_port() {
  local name=$1 port=$2 limit=$3 alive=${4:-} log=${5:-}
  local deadline=$((SECONDS + limit))
  until port_open "$port"; do
    if [ -n "$alive" ] && ! "$alive"; then
      show_log "$log"
      die "$name exited before listening on $HOST:$port${log:+ (log: $log)}"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log "$log"
      die "$name is not listening on $HOST:$port after ${limit}s${log:+ (log: $log)}"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- apt-get ---
apt_updated=0
apt_log=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    die "$* not installed and apt-get is not available; install $* and run again"
  apt_log=$(mktemp "${TMPDIR:-/tmp}/ensure-services-apt.XXXXXX")
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$apt_log" 2>&1 ||
      { tail -n 30 "$apt_log" >&2; die "apt-get update failed (full log: $apt_log)"; }
    apt_updated=1
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$apt_log" 2>&1 ||
    { tail -n 30 "$apt_log" >&2; die "apt-get install $* failed (full log: $apt_log)"; }
  rm -f "$apt_log"
}

# ------------------------------------------------------------- PostgreSQL ---
pg_installed() { command -v pg_ctlcluster >/dev/null 2>&1 && command -v pg_lsclusters >/dev/null 2>&1; }

# Prints "VERSION NAME" of the local cluster configured for $PG_PORT.
pg_cluster() {
  pg_lsclusters --no-header 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2; exit }'
}

pg_newest_version() {
  local v best=""
  for v in /usr/lib/postgresql/*/bin/postgres; do
    [ -x "$v" ] || continue
    v=${v#/usr/lib/postgresql/}; v=${v%%/*}
    if [ -z "$best" ] || [ "$v" -gt "$best" ]; then best=$v; fi
  done
  echo "$best"
}

# Puts "host all all 127.0.0.1/32 trust" in front of every other rule.
pg_configure_trust() {
  local ver=$1 name=$2 hba current tmp
  hba=/etc/postgresql/$ver/$name/pg_hba.conf
  current=$(as_root cat "$hba") || die "PostgreSQL: cannot read $hba"
  # Already fine if the first rule for 127.0.0.1/32 is "host all all ... trust".
  if [ "$(awk '$1 == "host" && $4 == "127.0.0.1/32" { print $2, $3, $5; exit }' <<<"$current")" = "all all trust" ]; then
    return 0
  fi
  say "PostgreSQL: trusting TCP connections from 127.0.0.1 ($hba)"
  tmp=$(mktemp)
  awk '
    !done && /^[[:space:]]*(local|host)/ {
      print "# added by parley scripts/ensure-services.sh: passwordless TCP from 127.0.0.1"
      print "host    all             all             127.0.0.1/32            trust"
      done = 1
    }
    { print }
    END {
      if (!done) {
        print "# added by parley scripts/ensure-services.sh: passwordless TCP from 127.0.0.1"
        print "host    all             all             127.0.0.1/32            trust"
      }
    }' <<<"$current" >"$tmp"
  # cp onto the existing file keeps its owner and mode.
  as_root cp "$tmp" "$hba" || { rm -f "$tmp"; die "PostgreSQL: cannot write $hba"; }
  rm -f "$tmp"
}

pg_ctl() { as_root pg_ctlcluster --skip-systemctl-redirect "$1" "$2" "$3"; }

pg_fresh=0
start_postgres() {
  local cluster ver name
  cluster=$(pg_cluster)
  if [ -z "$cluster" ]; then
    if pg_lsclusters --no-header 2>/dev/null | grep -q .; then
      pg_lsclusters >&2 || true
      die "PostgreSQL: no local cluster is configured for port $PG_PORT (see above)"
    fi
    ver=$(pg_newest_version)
    [ -n "$ver" ] || die "PostgreSQL: no server binaries under /usr/lib/postgresql"
    say "PostgreSQL: creating cluster $ver/main on port $PG_PORT"
    as_root pg_createcluster -p "$PG_PORT" "$ver" main >/dev/null
    pg_fresh=1
    cluster="$ver main"
  fi
  read -r ver name <<<"$cluster"
  if [ "$pg_fresh" -eq 1 ]; then pg_configure_trust "$ver" "$name"; fi
  if ! port_open "$PG_PORT"; then
    say "PostgreSQL: starting cluster $ver/$name"
    pg_ctl "$ver" "$name" start || die "PostgreSQL: pg_ctlcluster $ver $name start failed"
  elif [ "$pg_fresh" -eq 1 ]; then
    pg_ctl "$ver" "$name" reload >/dev/null
  fi
}

pg_can_login() {
  PGCONNECT_TIMEOUT=5 psql -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -w -Atqc 'select 1' >/dev/null 2>&1
}

check_postgres_auth() {
  command -v psql >/dev/null 2>&1 || return 0 # not a local install; nothing to check with
  pg_can_login && return 0
  local cluster ver name
  cluster=$(pg_installed && pg_cluster || true)
  if [ -n "$cluster" ] && { [ "$pg_fresh" -eq 1 ] || [ "$PARLEY_PG_TRUST" = 1 ]; }; then
    read -r ver name <<<"$cluster"
    pg_configure_trust "$ver" "$name"
    pg_ctl "$ver" "$name" reload >/dev/null
    local deadline=$((SECONDS + 10))
    until pg_can_login; do
      [ "$SECONDS" -lt "$deadline" ] || break
      sleep 0.2
    done
    pg_can_login && return 0
  fi
  die "PostgreSQL on $HOST:$PG_PORT does not let user postgres in without a password.
  Tests need 'psql -h $HOST -U postgres' to work: add
      host all all 127.0.0.1/32 trust
  above the other rules in pg_hba.conf and reload PostgreSQL, or run
  PARLEY_PG_TRUST=1 $0 to have this script do it for a local cluster."
}

# ------------------------------------------------------------------- NATS ---
nats_bin() {
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server
  elif [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server
  fi
}
nats_pidfile=/run/parley-nats-server-$NATS_PORT.pid
nats_alive() { [ -r "$nats_pidfile" ] && kill -0 "$(cat "$nats_pidfile")" 2>/dev/null; }

start_nats() {
  local bin
  bin=$(nats_bin)
  [ -n "$bin" ] || die "NATS: nats-server not found"
  as_root mkdir -p "$NATS_STORE_DIR" "$(dirname "$NATS_LOG")" ||
    die "NATS: cannot create $NATS_STORE_DIR or the directory of $NATS_LOG"
  say "NATS: starting $bin on $HOST:$NATS_PORT (JetStream in $NATS_STORE_DIR, log $NATS_LOG)"
  as_root start-stop-daemon --start --oknodo --quiet --background \
    --make-pidfile --pidfile "$nats_pidfile" --exec "$bin" -- \
    -a "$HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE_DIR" -l "$NATS_LOG" ||
    die "NATS: start-stop-daemon could not start $bin"
}

# The server's INFO greeting says whether JetStream is enabled.
check_nats_jetstream() {
  local info
  info=$(timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$NATS_PORT; IFS= read -r line <&3; printf '%s' \"\$line\"" 2>/dev/null) || true
  case $info in
    INFO*'"jetstream":true'*) return 0 ;;
    INFO*) die "NATS on $HOST:$NATS_PORT runs without JetStream; restart it with -js (e.g. nats-server -a $HOST -p $NATS_PORT -js -sd $NATS_STORE_DIR)" ;;
    *) die "NATS: whatever listens on $HOST:$NATS_PORT did not greet like a NATS server" ;;
  esac
}

# --------------------------------------------------------------- RabbitMQ ---
# True while an Erlang VM running the rabbit application exists (it may still
# be booting). Reads /proc so procps need not be installed.
rabbitmq_running() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q 'beam.*-s rabbit boot'; then return 0; fi
  done
  return 1
}

start_rabbitmq() {
  if rabbitmq_running; then
    say "RabbitMQ: already booting, waiting for $HOST:$RABBITMQ_PORT"
    return 0
  fi
  say "RabbitMQ: starting (rabbitmq-server -detached)"
  local out
  out=$(as_root rabbitmq-server -detached 2>&1) || { echo "$out" >&2; die "RabbitMQ: rabbitmq-server -detached failed"; }
}

# ------------------------------------------------------------------- main ---
need_pg=0 need_nats=0 need_rabbitmq=0
port_open "$PG_PORT" || need_pg=1
port_open "$NATS_PORT" || need_nats=1
if [ "$want_rabbitmq" -eq 1 ] && ! port_open "$RABBITMQ_PORT"; then need_rabbitmq=1; fi

missing=()
if [ "$need_pg" -eq 1 ] && ! pg_installed; then missing+=(postgresql); pg_fresh=1; fi
if [ "$need_nats" -eq 1 ] && [ -z "$(nats_bin)" ]; then missing+=(nats-server); fi
if [ "$need_rabbitmq" -eq 1 ] && ! command -v rabbitmq-server >/dev/null 2>&1; then missing+=(rabbitmq-server); fi
# The relay's web admin page is tested in Debian's headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then missing+=(chromium); fi
if ! command -v xsltproc >/dev/null 2>&1; then missing+=(xsltproc); fi
if ! command -v xmllint >/dev/null 2>&1; then missing+=(libxml2-utils); fi
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
  if [ "$need_pg" -eq 1 ] && ! pg_installed; then die "PostgreSQL: pg_ctlcluster still missing after apt-get install"; fi
fi

# Start everything first and wait afterwards, so slow starters overlap.
# (if-statements rather than `cond && fn`: errexit is off inside such a fn.)
if [ "$need_pg" -eq 1 ]; then start_postgres; fi
if [ "$need_nats" -eq 1 ]; then start_nats; fi
if [ "$need_rabbitmq" -eq 1 ]; then start_rabbitmq; fi

newest_log() { ls -t "$@" 2>/dev/null | head -n 1 || true; }
if [ "$need_pg" -eq 1 ]; then
  wait_port PostgreSQL "$PG_PORT" "$WAIT_SECONDS" "" "$(newest_log /var/log/postgresql/postgresql-*.log)"
fi
if [ "$need_nats" -eq 1 ]; then
  wait_port NATS "$NATS_PORT" "$WAIT_SECONDS" nats_alive "$NATS_LOG"
fi
if [ "$need_rabbitmq" -eq 1 ]; then
  wait_port RabbitMQ "$RABBITMQ_PORT" "$RABBITMQ_WAIT_SECONDS" rabbitmq_running "$(newest_log /var/log/rabbitmq/*.log)"
fi

check_postgres_auth
check_nats_jetstream

[ "$need_pg$need_nats$need_rabbitmq" = 000 ] || say "services are up"
exit 0
