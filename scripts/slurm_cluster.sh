#!/usr/bin/env bash
# A real single-node Slurm on localhost, for testing `snakemake --profile slurm` (tests/test_slurm.py).
#
#   bash scripts/slurm_cluster.sh start    # install (apt) if needed, write the config, start the daemons
#   bash scripts/slurm_cluster.sh status   # which daemons run, and the node as Slurm sees it (exit 1: not up)
#   bash scripts/slurm_cluster.sh stop     # cancel its jobs, stop exactly the daemons `start` started
#
# Needs root and apt-get (Debian/Ubuntu). There is no systemd: munged, slurmctld and slurmd are
# started by hand, in the foreground of a new session each, and their pids are kept under
# $GRIDS_SLURM_HOME/pids; `stop` kills only those pids (a munged that was already running is used
# and left alone). `start` is idempotent: a running cluster with an unchanged config is left as it is.
#
# The cluster: partition `debug` with one node `localhost` (advertising $GRIDS_SLURM_CPUS CPUs and
# $GRIDS_SLURM_MEM_MB MB, more than the machine may have, so that jobs sized for a real cluster are
# not refused; nothing is enforced: TaskPlugin=task/none, ProctrackType=proctrack/linuxproc) and a
# generic GPU resource gpu:2 backed by character devices (no real GPU). No accounting daemon: jobs
# are polled with squeue, so MinJobAge is long (600 s) for finished jobs to stay visible.
# slurm.conf must be in /etc/slurm (the job-step plugin clears SLURM_CONF inside jobs); `stop`
# removes the files it wrote there, so that Slurm clients left on the machine fail fast instead of
# waiting ~10 s for a controller that is gone (the Snakemake Slurm plugin asks at every start).
set -euo pipefail

HOME_DIR=${GRIDS_SLURM_HOME:-/var/lib/grids-slurm}
CPUS=${GRIDS_SLURM_CPUS:-8}
MEM_MB=${GRIDS_SLURM_MEM_MB:-32000}
GPUS=2
NODE=localhost
PARTITION=debug
CONF_DIR=/etc/slurm
MARKER="# written by grids scripts/slurm_cluster.sh"
PACKAGES=(munge slurm-client slurmctld slurmd)
MUNGE_SOCKET_DIR=/run/munge

log() { echo "slurm_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- pid records -------------------------------------------------------------------------------

pid_file() { echo "$HOME_DIR/pids/$1.pid"; }

# The pid recorded for daemon $1 if that process still runs the daemon's binary, else nothing.
running_pid() {
  local name=$1 file pid
  file=$(pid_file "$name")
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
    echo "$pid"
  fi
}

# Start daemon $1 (command in "${@:2}") in the foreground of its own session, logging to a file,
# and record its pid.
spawn() {
  local name=$1
  shift
  setsid "$@" >>"$HOME_DIR/log/$name.out" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
}

stop_pid() {
  local name=$1 pid
  pid=$(running_pid "$name")
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
      log "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid)"
  fi
  rm -f "$(pid_file "$name")"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$what not ready after ${seconds}s (logs: $HOME_DIR/log/)"
    fi
    sleep 0.2
  done
}

# --- install and configure ---------------------------------------------------------------------

install_packages() {
  local missing=()
  for bin in munged slurmctld slurmd sbatch; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "not root: cannot install ${PACKAGES[*]}"
  command -v apt-get >/dev/null || die "apt-get missing: install ${PACKAGES[*]} yourself"
  log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
  # Keep the packages' init scripts from starting daemons during the install.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$HOME_DIR/log/apt.log" 2>&1; then
    apt-get update -qq >>"$HOME_DIR/log/apt.log" 2>&1 &&
      apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$HOME_DIR/log/apt.log" 2>&1 || rc=$?
  fi
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || die "apt-get install failed (see $HOME_DIR/log/apt.log)"
}

slurm_conf() {
  cat <<EOF
$MARKER: a single-node test cluster on localhost.
# Removed by 'scripts/slurm_cluster.sh stop'; do not edit (it is rewritten by 'start').
ClusterName=grids-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$HOME_DIR/state
SlurmdSpoolDir=$HOME_DIR/spool
SlurmctldPidFile=$HOME_DIR/run/slurmctld.pid
SlurmdPidFile=$HOME_DIR/run/slurmd.pid
SlurmctldLogFile=$HOME_DIR/log/slurmctld.log
SlurmdLogFile=$HOME_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# the node may advertise more CPUs/memory than the machine has
SlurmdParameters=config_overrides
ReturnToService=2
# finished jobs stay visible to squeue for 10 min (the Snakemake plugin polls with squeue only if
# MinJobAge >= 3x its initial status-check interval)
MinJobAge=600
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

gres_conf() {
  echo "$MARKER: character devices standing in for GPUs."
  echo "NodeName=$NODE Name=gpu File=$HOME_DIR/dev/gpu[0-$((GPUS - 1))]"
}

# Write $2 (content) to $1 if it differs; refuse to overwrite a file this script did not write.
# Prints "changed" when it wrote.
install_file() {
  local path=$1 content=$2
  if [ -e "$path" ] && ! grep -qF "$MARKER" "$path"; then
    die "$path exists and was not written by this script; not touching a real Slurm installation"
  fi
  if [ ! -e "$path" ] || [ "$(cat "$path")" != "$content" ]; then
    printf '%s\n' "$content" >"$path"
    echo changed
  fi
}

configure() {
  mkdir -p "$HOME_DIR"/{pids,run,log,state,spool,dev} "$CONF_DIR"
  for i in $(seq 0 $((GPUS - 1))); do
    [ -c "$HOME_DIR/dev/gpu$i" ] || mknod "$HOME_DIR/dev/gpu$i" c 1 3  # same numbers as /dev/null
  done
  local changed
  changed=$(install_file "$CONF_DIR/slurm.conf" "$(slurm_conf)")
  changed+=$(install_file "$CONF_DIR/gres.conf" "$(gres_conf)")
  [ -n "$changed" ] && echo changed
  return 0
}

# --- daemons -----------------------------------------------------------------------------------

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
controller_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
node_ready() {
  local state
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null) || return 1
  case "$state" in idle* | mix* | alloc*) return 0 ;; *) return 1 ;; esac
}

start_munge() {
  if [ -n "$(running_pid munged)" ] || munge_works; then
    return 0  # ours, or one already running on this machine (used, never stopped)
  fi
  [ -s /etc/munge/munge.key ] || {
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  }
  install -d -o munge -g munge -m 755 "$MUNGE_SOCKET_DIR"  # 755: clients must reach the socket
  rm -f "$MUNGE_SOCKET_DIR/munge.socket.2" "$MUNGE_SOCKET_DIR/munge.socket.2.lock"
  spawn munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground
  wait_for 10 munged munge_works
  log "started munged ($(running_pid munged))"
}

start_slurm() {
  if [ -z "$(running_pid slurmctld)" ]; then
    if controller_up; then
      die "a slurmctld not started by this script answers on this machine"
    fi
    spawn slurmctld slurmctld -D
    wait_for 20 slurmctld controller_up
    log "started slurmctld ($(running_pid slurmctld))"
  fi
  if [ -z "$(running_pid slurmd)" ]; then
    spawn slurmd slurmd -D -N "$NODE"
    log "started slurmd ($(running_pid slurmd))"
  fi
  wait_for 30 "node $NODE" node_ready
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "must run as root (starts munged, slurmctld, slurmd)"
  mkdir -p "$HOME_DIR/log"
  local begin=$SECONDS
  install_packages
  local changed
  changed=$(configure)
  if [ -n "$changed" ] && { [ -n "$(running_pid slurmctld)" ] || [ -n "$(running_pid slurmd)" ]; }; then
    log "config changed: restarting slurmd and slurmctld"
    stop_pid slurmd
    stop_pid slurmctld
  fi
  start_munge
  start_slurm
  log "cluster up in $((SECONDS - begin))s: partition $PARTITION, node $NODE ($CPUS CPUs, $MEM_MB MB, gpu:$GPUS)"
}

cmd_stop() {
  if [ -n "$(running_pid slurmctld)" ] && controller_up; then
    # Jobs left on this test cluster (e.g. by an interrupted test) go with it.
    scancel --partition="$PARTITION" --full 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while [ -n "$(squeue -h -p "$PARTITION" -t RUNNING,COMPLETING 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.5
    done
  fi
  stop_pid slurmd
  stop_pid slurmctld
  stop_pid munged
  for f in slurm.conf gres.conf; do
    if [ -e "$CONF_DIR/$f" ] && grep -qF "$MARKER" "$CONF_DIR/$f"; then
      rm -f "$CONF_DIR/$f"
    fi
  done
}

cmd_status() {
  local ok=0 name pid
  for name in munged slurmctld slurmd; do
    pid=$(running_pid "$name")
    if [ -n "$pid" ]; then
      echo "$name: running (pid $pid)"
    elif [ "$name" = munged ] && command -v munge >/dev/null && munge_works; then
      echo "munged: running (not started by this script)"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  if command -v sinfo >/dev/null && [ -e "$CONF_DIR/slurm.conf" ] && controller_up; then
    sinfo -N -o "%N %P %t %c %m %G"
    node_ready || ok=1
  else
    echo "controller: not reachable"
    ok=1
  fi
  return $ok
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
