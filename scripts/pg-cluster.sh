#!/usr/bin/env bash
# Starts and stops a throw-away PostgreSQL 15 cluster on loopback, for tests and the
# local demo: a primary and, with --standby, a synchronous streaming standby.
#
#   pg-cluster.sh start DIR [--standby] [--port N] [--standby-port M]
#       initdb DIR/primary (trust authentication on 127.0.0.1 only), start it with
#       wal_level=replica; with --standby also build DIR/standby with
#       `pg_basebackup -c fast -R`, start it and make it the primary's synchronous
#       standby. Ports not given are chosen free. Waits until every server answers
#       (pg_isready), then prints one DSN per line, primary first:
#         host=127.0.0.1 port=N user=postgres dbname=postgres
#       and writes them to DIR/dsn (primary), DIR/standby.dsn and DIR/multi.dsn (a
#       multi-host DSN with target_session_attrs=read-write that follows a promotion).
#   pg-cluster.sh stop DIR [primary|standby] [--immediate]
#       Stops the servers this script started in DIR (pg_ctl stop -m fast, by the
#       PID files in their data directories), or only the one named; --immediate
#       stops like a crash (-m immediate). A server whose postmaster was killed
#       (kill -9) is cleaned up instead: its orphaned children are waited for (and
#       killed after 10 s) and its leftover shared-memory segment is removed, so the
#       data directory can be started again. Never touches any other process.
#   pg-cluster.sh promote DIR
#       Promotes the standby (pg_ctl promote -w) and prints its DSN when it accepts
#       writes. With the primary stopped, this is a back-end failover.
#
# As root the servers run as the `postgres` user (initdb refuses root); otherwise as
# the calling user. PG_BIN overrides the binaries' directory
# (default /usr/lib/postgresql/15/bin). Exit status 3 means PostgreSQL is not installed.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

usage() {
  echo "usage: pg-cluster.sh start DIR [--standby] [--port N] [--standby-port M]" >&2
  echo "       pg-cluster.sh stop DIR [primary|standby] [--immediate]" >&2
  echo "       pg-cluster.sh promote DIR" >&2
  exit 2
}

# Runs a command as the user that owns the clusters.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A TCP port on 127.0.0.1 that nothing listens on right now. A server that still
# loses the race to another process fails to start and is retried on a new port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

dsn_for() { echo "host=127.0.0.1 port=$1 user=postgres dbname=postgres"; }

# Waits until the server on port $1 accepts connections (pg_ctl -w already waited
# for start-up; this also covers a standby still connecting to its primary).
wait_ready() {
  local port=$1 tries=0
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; do
    tries=$((tries + 1))
    ((tries < 300)) || die "the server on port $port did not become ready"
    sleep 0.1  # a refused connection returns at once: poll, do not spin
  done
}

# Starts the server of data directory $1, trying port $2 first (free ports are
# re-chosen when the port was taken meanwhile, unless it was given explicitly).
# Prints the port it listens on.
start_server() {
  local data=$1 port=$2 fixed=$3 log attempt
  log="$(dirname "$data")/$(basename "$data").log"
  for attempt in 1 2 3 4 5; do
    if as_owner "$PG_BIN/pg_ctl" start -w -t 60 -D "$data" -l "$log" -o "-p $port" >/dev/null; then
      echo "$port"
      return 0
    fi
    if [[ $fixed == yes ]] || ! grep -q "could not bind\|Address already in use" "$log"; then
      tail -n 5 "$log" >&2 || true
      die "could not start the server in $data (log: $log)"
    fi
    port=$(free_port)
  done
  die "could not find a free port for the server in $data"
}

cmd_start() {
  local dir="" standby=no port="" standby_port=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --standby) standby=yes ;;
      --port) port=${2:?}; shift ;;
      --standby-port) standby_port=${2:?}; shift ;;
      -*) usage ;;
      *) [[ -z $dir ]] || usage; dir=$1 ;;
    esac
    shift
  done
  [[ -n $dir ]] || usage
  if [[ ! -x $PG_BIN/initdb || ! -x $PG_BIN/pg_ctl ]]; then
    echo "pg-cluster: PostgreSQL server binaries not found in $PG_BIN (install the postgresql package)" >&2
    exit 3
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ ! -e $dir/primary ]] || die "$dir/primary already exists; stop and remove the old cluster first"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run the servers"
    # The servers run as postgres: they need to reach their data directories.
    chown postgres: "$dir"
    chmod 0755 "$dir"
    as_owner test -w "$dir" || die "the postgres user cannot write to $dir (check the permissions of its parents)"
  fi

  local fixed_primary=yes fixed_standby=yes
  [[ -n $port ]] || { port=$(free_port); fixed_primary=no; }
  # A start that fails half-way stops what it had started.
  started_dir=$dir
  trap 'if [[ -n ${started_dir:-} ]]; then cmd_stop "$started_dir" >/dev/null 2>&1 || true; fi' EXIT

  # --no-sync: a throw-away cluster needs no fsync of its initial files (the server
  # itself still syncs every commit).
  as_owner "$PG_BIN/initdb" -D "$dir/primary" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
    { tail -n 5 "$dir/initdb.log" >&2; die "initdb failed (log: $dir/initdb.log)"; }
  # Loopback TCP only: no Unix socket, no other interface, trust for 127.0.0.1.
  cat >"$dir/primary/pg_hba.conf" <<'EOF'
host all         all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOF
  cat >>"$dir/primary/postgresql.conf" <<'EOF'
# pg-cluster.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
wal_retrieve_retry_interval = 100ms
shared_buffers = 32MB
max_connections = 100
EOF
  port=$(start_server "$dir/primary" "$port" "$fixed_primary")
  wait_ready "$port"
  dsn_for "$port" >"$dir/dsn"
  dsn_for "$port"

  if [[ $standby == yes ]]; then
    [[ -n $standby_port ]] || { standby_port=$(free_port); fixed_standby=no; }
    # -R writes primary_conninfo and standby.signal. The copy carries the primary's
    # postgresql.auto.conf: the standby must not inherit synchronous_standby_names,
    # or once promoted it would block every commit waiting for a standby it lacks.
    as_owner "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/standby" -c fast -R \
      -d "host=127.0.0.1 port=$port user=postgres application_name=standby" >"$dir/basebackup.log" 2>&1 ||
      { tail -n 5 "$dir/basebackup.log" >&2; die "pg_basebackup failed (log: $dir/basebackup.log)"; }
    as_owner sed -i '/^synchronous_standby_names/d' "$dir/standby/postgresql.auto.conf"
    standby_port=$(start_server "$dir/standby" "$standby_port" "$fixed_standby")
    wait_ready "$standby_port"
    # Now make it synchronous, and wait until the primary sees it streaming as such.
    "$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "ALTER SYSTEM SET synchronous_standby_names = 'standby'" -c "SELECT pg_reload_conf()" >/dev/null
    local tries=0
    until [[ $("$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby' AND sync_state = 'sync' AND state = 'streaming'") == 1 ]]; do
      tries=$((tries + 1))
      ((tries < 600)) || die "the standby did not become synchronous"
      # pg_stat_replication changes asynchronously; poll it, with a short pause.
      sleep 0.05
    done
    dsn_for "$standby_port" >"$dir/standby.dsn"
    echo "host=127.0.0.1,127.0.0.1 port=$port,$standby_port user=postgres dbname=postgres target_session_attrs=read-write" \
      >"$dir/multi.dsn"
    dsn_for "$standby_port"
  fi
  started_dir=""
}

# The processes of the cluster in data directory $1: a postmaster and its children
# run in their data directory.
processes_in() {
  local real proc
  real=$(cd "$1" && pwd -P)
  for proc in /proc/[0-9]*; do
    [[ $(readlink "$proc/cwd" 2>/dev/null) == "$real" ]] && echo "${proc#/proc/}"
  done
  return 0
}

# After its postmaster was killed, a server's children exit once they notice, and its
# System V shared-memory segment stays until removed (a new postmaster refuses to
# start while a process still has it attached). Waits for the first, removes the second.
clean_after_crash() {
  local data=$1 tries=0 left key shmid
  while left=$(processes_in "$data") && [[ -n $left ]]; do
    tries=$((tries + 1))
    if ((tries > 100)); then
      echo "pg-cluster: killing processes of $data left by its dead postmaster: $(echo $left)" >&2
      kill -KILL $left 2>/dev/null || true
      break
    fi
    sleep 0.1  # they exit at their next check of the postmaster: poll, do not spin
  done
  # Line 7 of postmaster.pid: the segment's key and id. Removed only if both still
  # match and nothing is attached to it.
  read -r key shmid < <(sed -n 7p "$data/postmaster.pid") || true
  if [[ ${key:-} =~ ^[0-9]+$ && ${shmid:-} =~ ^[0-9]+$ ]] &&
    awk -v key="$key" -v id="$shmid" '$1 == key && $2 == id && $7 == 0 { found = 1 } END { exit !found }' \
      /proc/sysvipc/shm 2>/dev/null; then
    ipcrm -m "$shmid" 2>/dev/null || echo "pg-cluster: could not remove shared-memory segment $shmid of $data" >&2
  fi
}

cmd_stop() {
  local dir="" names=(standby primary) mode=fast name status=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      --immediate) mode=immediate ;;
      primary | standby) [[ -n $dir ]] || usage; names=("$1") ;;
      -*) usage ;;
      *) [[ -z $dir ]] || usage; dir=$1 ;;
    esac
    shift
  done
  [[ -n $dir ]] || usage
  [[ -d $dir ]] || die "$dir does not exist"
  for name in "${names[@]}"; do
    local data="$dir/$name"
    # Only servers this script started: their PID file lives in DIR, and the
    # process it names still runs there (a postmaster's working directory is its
    # data directory), so a stale file never gets another process signalled.
    [[ -f $data/postmaster.pid ]] || continue
    local pid
    pid=$(head -n 1 "$data/postmaster.pid")
    if [[ ! $pid =~ ^[0-9]+$ ]] || [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) != "$(cd "$data" && pwd -P)" ]]; then
      echo "pg-cluster: the postmaster of $data is not running; cleaning up after it" >&2
      clean_after_crash "$data"
      continue
    fi
    if ! as_owner "$PG_BIN/pg_ctl" stop -D "$data" -m "$mode" -w -t 60 >/dev/null; then
      echo "pg-cluster: could not stop the server in $data" >&2
      status=1
    fi
  done
  return $status
}

cmd_promote() {
  [[ $# -eq 1 ]] || usage
  local dir=$1 port
  [[ -f $dir/standby/postmaster.pid && -f $dir/standby.dsn ]] || die "no running standby in $dir"
  as_owner "$PG_BIN/pg_ctl" promote -w -t 60 -D "$dir/standby" >/dev/null || die "could not promote the standby in $dir"
  port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$dir/standby.dsn")
  wait_ready "$port"
  cat "$dir/standby.dsn"
}

[[ $# -ge 1 ]] || usage
command=$1
shift
case $command in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  promote) cmd_promote "$@" ;;
  *) usage ;;
esac
