#!/usr/bin/env bash
# A real single-node Slurm for loom's tests: munged, slurmctld and slurmd on this machine,
# everything (config, state, spool, logs, pid files, munge socket) under one scratch dir.
#
#   ci/slurm.sh start    writes DIR/slurm.conf, starts the daemons, waits until the node is
#                        idle, prints `export SLURM_CONF=DIR/slurm.conf`; says so when already up
#   ci/slurm.sh stop     cancels the cluster's jobs, stops the daemons by their pid files
#   ci/slurm.sh status   exit 0 when up (prints sinfo), 3 when down
#
# DIR is $LOOM_SLURM_DIR, default <repo>/build/slurm-cluster. Ports: $LOOM_SLURM_PORT (slurmctld;
# default 16817-17215, chosen from DIR) and the next one (slurmd). Needs root and the Debian packages slurmctld,
# slurmd, slurm-client and munge (ci/setup.sh installs them); without them `start` prints why
# and exits 77, which CTest reports as a skip. It installs nothing itself.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${LOOM_SLURM_DIR:-$repo/build/slurm-cluster}"
# Two build trees may each run a cluster: the default port pair depends on the scratch dir.
ctld_port="${LOOM_SLURM_PORT:-$((16817 + 2 * ($(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 200)))}"
slurmd_port=$((ctld_port + 1))
conf="$dir/slurm.conf"
munge_dir="$dir/munge"
munge_socket="$munge_dir/munge.socket"
munge_key="${LOOM_MUNGE_KEY:-/etc/munge/munge.key}"
skip=77
start_timeout=60

say() { echo "slurm.sh: $*"; }
fail() { echo "slurm.sh: error: $*" >&2; exit 1; }

# The pid in FILE when that process is alive, else nothing.
live_pid() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(tr -dc '0-9' <"$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

node_state() { SLURM_CONF="$conf" sinfo -h -N -o '%T' 2>/dev/null | head -n 1; }

is_up() {
  live_pid "$dir/slurmctld.pid" >/dev/null && live_pid "$dir/slurmd.pid" >/dev/null || return 1
  case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; esac
  return 1
}

print_logs() {
  local log
  for log in "$munge_dir/munged.log" "$dir/slurmctld.log" "$dir/slurmd.log"; do
    [ -f "$log" ] || continue
    echo "---- $log (last 40 lines)" >&2
    tail -n 40 "$log" >&2
  done
}

check_can_start() {
  if [ "$(id -u)" -ne 0 ]; then
    say "skipping: the local Slurm needs root (slurmd runs jobs as any user); running as $(id -un)"
    exit $skip
  fi
  local missing=() cmd
  for cmd in munged munge unmunge slurmctld slurmd sinfo sbatch scontrol; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if ((${#missing[@]})); then
    say "skipping: not installed: ${missing[*]} (ci/setup.sh installs slurmctld slurmd slurm-client munge)"
    exit $skip
  fi
  id munge >/dev/null 2>&1 || { say "skipping: no 'munge' user (is the munge package installed?)"; exit $skip; }
  [ -r "$munge_key" ] || { say "skipping: munge key $munge_key missing (LOOM_MUNGE_KEY names another)"; exit $skip; }
}

write_conf() {
  local host cpus mem_mb
  host="$(hostname -s)"
  # nproc honours OMP_NUM_THREADS, which test environments set to 1: the node has them all.
  cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  # Slurm drains a node that reports less memory than configured: declare what is there.
  mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 512))
  cat >"$conf" <<EOF
# Written by ci/slurm.sh for loom's tests: one node, everything under $dir.
ClusterName=loom-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=10
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
}

start_munged() {
  if live_pid "$munge_dir/munged.pid" >/dev/null; then return 0; fi
  mkdir -p "$munge_dir"
  chown munge:munge "$munge_dir"
  chmod 0755 "$munge_dir"
  su -s /bin/sh munge -c "munged --socket='$munge_socket' --key-file='$munge_key' \
      --pid-file='$munge_dir/munged.pid' --log-file='$munge_dir/munged.log' \
      --seed-file='$munge_dir/munged.seed'" || { print_logs; fail "munged did not start"; }
  for _ in $(seq 50); do
    munge -S "$munge_socket" -n 2>/dev/null | unmunge -S "$munge_socket" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  print_logs
  fail "munged started but 'munge -n | unmunge' fails on $munge_socket"
}

start() {
  check_can_start
  if is_up; then
    say "already up ($conf)"
    echo "export SLURM_CONF=$conf"
    return 0
  fi
  mkdir -p "$dir/state" "$dir/spool"
  write_conf
  start_munged
  # -c: a test cluster starts without the previous run's jobs.
  if ! live_pid "$dir/slurmctld.pid" >/dev/null; then
    SLURM_CONF="$conf" slurmctld -c -f "$conf" || { print_logs; fail "slurmctld did not start"; }
  fi
  if ! live_pid "$dir/slurmd.pid" >/dev/null; then
    SLURM_CONF="$conf" slurmd -f "$conf" || { print_logs; fail "slurmd did not start"; }
  fi
  local waited=0 state=""
  while ((waited < start_timeout * 2)); do
    state="$(node_state)"
    [ "$state" = idle ] && break
    sleep 0.5
    waited=$((waited + 1))
  done
  if [ "$state" != idle ]; then
    print_logs
    fail "the node is not idle after ${start_timeout} s (sinfo says '${state:-nothing}')"
  fi
  say "up in $((waited / 2)) s: $(SLURM_CONF="$conf" sinfo -h -o '%P %D %T %c CPUs')"
  echo "export SLURM_CONF=$conf"
}

# Sends TERM to the daemon in PIDFILE, KILL after 10 s; the pid file is the only way to find it.
stop_daemon() {
  local name="$1" pidfile="$2" pid
  pid="$(live_pid "$pidfile")" || { rm -f "$pidfile"; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) ignored TERM for 10 s: KILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
  say "stopped $name ($pid)"
}

stop() {
  if live_pid "$dir/slurmctld.pid" >/dev/null; then
    local jobs
    jobs="$(SLURM_CONF="$conf" squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      SLURM_CONF="$conf" scancel $jobs 2>/dev/null
      for _ in $(seq 30); do
        [ -z "$(SLURM_CONF="$conf" squeue -h -o '%i' 2>/dev/null)" ] && break
        sleep 0.5
      done
    fi
  fi
  stop_daemon slurmd "$dir/slurmd.pid"
  stop_daemon slurmctld "$dir/slurmctld.pid"
  stop_daemon munged "$munge_dir/munged.pid"
}

status() {
  if is_up; then
    say "up ($conf)"
    SLURM_CONF="$conf" sinfo
    echo "export SLURM_CONF=$conf"
    return 0
  fi
  say "down ($dir)"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: ci/slurm.sh start|stop|status   (scratch dir: \$LOOM_SLURM_DIR, default build/slurm-cluster)" >&2; exit 2 ;;
esac
