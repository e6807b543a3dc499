#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for regbench's SLURM tests and for trying
# `regbench run -m hydra/launcher=slurm ...` without a real cluster. Run as root:
#
#   bash scripts/slurm_local.sh start    # install slurm-wlm and munge (Debian) if missing, start; idempotent
#   bash scripts/slurm_local.sh status   # exit 0 iff the node answers and is up
#   bash scripts/slurm_local.sh stop     # stop the daemons (the packages and the config stay)
#
# The node is this machine: every CPU, and a RealMemory a little below the memory free now, so
# that `sbatch --mem` larger than that is refused by sbatch itself. The node shares this
# machine's disk, so any sweep folder here is one the jobs see.
#
# Two partitions on the node: `debug` (the default, PriorityTier=1) and `urgent` (PriorityTier=2).
# With PreemptType=preempt/partition_prio and PreemptMode=REQUEUE, a job in `urgent` that needs
# CPUs a `debug` job holds preempts it: SLURM sends that job SIGCONT and SIGTERM (GraceTime=0),
# SIGKILL KillWait seconds later, and puts it back in the queue, as a real cluster's
# preemptible partition does. Jobs that name no partition never preempt one another.
#
# `start` on a cluster already running this script's config of an older version (another
# CONF_VERSION below) writes the new one and restarts the daemons: idempotent otherwise.
#
# Accounting is off (no slurmdbd, the case the issue asks regbench to handle quietly): plain
# `sacct` prints "Slurm accounting storage is disabled" on stderr and exits 1 (submitit's job
# watcher polls it and logs a warning each time). No slurm.conf setting changes that: slurm-wlm
# 22.05 has only accounting_storage/none and /slurmdbd (a slurmdbd and a MySQL/MariaDB). What
# JobCompType=jobcomp/filetxt below gives is `sacct -c` (--completion): ended jobs, their state
# and node, read from that file.
set -uo pipefail

conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
spool=/var/spool/slurm-local
logs=/var/log/slurm-local
partition=debug
urgent=urgent  # the high-priority partition that preempts debug's jobs
# Bump when the config below changes: `start` then restarts a cluster running an older one.
CONF_VERSION=2

die() { echo "slurm_local: $*" >&2; exit 1; }

node_state() { sinfo -h -n localhost -o '%T' 2>/dev/null | head -n1; }

is_up() {
    local state
    # sinfo retries for about 10 s when no slurmctld answers: ask only where one runs
    pidof slurmctld >/dev/null 2>&1 || return 1
    state=$(node_state)
    # idle, mixed, allocated (with or without a trailing * or ~) are up; down, drained, unknown are not
    [[ $state =~ ^(idle|mixed|allocated|completing) ]]
}

install() {
    command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "slurm-wlm is not installed and installing it needs root"
    command -v apt-get >/dev/null 2>&1 || die "slurm-wlm is not installed and there is no apt-get to install it"
    local log
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >"$log" 2>&1; then
        local why
        why=$(grep -m1 -E '^(E|W):' "$log" || tail -n1 "$log")
        rm -f "$log"
        die "apt-get could not install slurm-wlm and munge: ${why:-no reason given}"
    fi
    rm -f "$log"
}

write_conf() {
    local cpus free_mb mem_mb
    cpus=$(nproc)
    free_mb=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
    # A little below what is free: slurmd drains a node whose RealMemory exceeds what it finds.
    mem_mb=$(( free_mb * 9 / 10 ))
    mkdir -p "$conf_dir" "$spool/ctld" "$spool/d" "$logs"
    chown -R slurm:slurm "$spool" "$logs" 2>/dev/null || true
    cat >"$conf" <<EOF
# Written by regbench's scripts/slurm_local.sh: one node (this machine), two partitions.
# regbench-slurm-local-conf-version: $CONF_VERSION
ClusterName=regbench-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/slurmctld-local.pid
SlurmdPidFile=/run/slurmd-local.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
# Memory is a consumable resource (CR_Core_Memory): sbatch refuses --mem above RealMemory
# ("Memory specification can not be satisfied") and jobs share the node by their --mem.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that asks for no memory gets its CPUs' share, not the whole node.
DefMemPerCPU=$(( mem_mb / cpus ))
# Requeue (scontrol requeue, preemption, submitit's timeout handling) allowed.
JobRequeue=1
# Short timeouts: one node on localhost, a test waits on them.
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
# No accounting database (no slurmdbd): sacct cannot list jobs; scontrol show job can (for
# MinJobAge seconds after they end). jobcomp/filetxt writes each ended job to a file.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$logs/jobcomp.txt
# Preemption by partition: a pending job of a higher PriorityTier requeues the running jobs of a
# lower one whose resources it needs (SIGCONT and SIGTERM at once, GraceTime=0 being the
# default; SIGKILL KillWait seconds later).
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$partition Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=$urgent Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=2
EOF
    # Newer slurm-wlm packages look for the config in /etc/slurm; older ones in /etc/slurm-llnl.
    if [ -d /etc/slurm-llnl ] && [ ! -e /etc/slurm-llnl/slurm.conf ]; then
        ln -sf "$conf" /etc/slurm-llnl/slurm.conf
    fi
    echo "$cpus $mem_mb"
}

start_munge() {
    pidof munged >/dev/null 2>&1 && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none || die "could not write /etc/munge/munge.key"
    fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c munged 2>/dev/null || runuser -u munge -- munged || die "munged did not start"
    else
        munged --force || die "munged did not start"
    fi
    local i
    for i in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged does not answer (munge -n | unmunge)"
}

stop_daemons() {
    # Only the daemons this script started: the pids their pid files (slurm.conf above) name.
    local file pid pids=()
    for file in /run/slurmd-local.pid /run/slurmctld-local.pid; do
        pid=$(cat "$file" 2>/dev/null) || continue
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$file"
    done
    for _ in $(seq 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
}

start() {
    local t0 cpus mem_mb
    t0=$(date +%s%N)
    if [ -f "$conf" ] && grep -qx "# regbench-slurm-local-conf-version: $CONF_VERSION" "$conf" && is_up; then
        read -r cpus mem_mb < <(sed -n 's/^NodeName=localhost CPUs=\([0-9]*\) RealMemory=\([0-9]*\).*/\1 \2/p' "$conf")
        echo "slurm: already running: one node localhost, $cpus CPUs, $mem_mb MB, partitions $partition (default) and $urgent (preempts it)"
        return 0
    fi
    # Not running, or running an older config (or one this script did not write): (re)start below.
    [ "$(id -u)" = 0 ] || die "needs root (it writes /etc/slurm/slurm.conf and starts munged, slurmctld and slurmd)"
    install
    stop_daemons
    read -r cpus mem_mb < <(write_conf)
    start_munge
    slurmctld -i >/dev/null 2>&1 || die "slurmctld did not start; see $logs/slurmctld.log"
    slurmd >/dev/null 2>&1 || die "slurmd did not start; see $logs/slurmd.log"
    local i state
    for i in $(seq 150); do  # 30 s
        if is_up; then
            local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
            printf 'slurm: one node localhost, %s CPUs, %s MB, partitions %s (default) and %s (preempts it) (up in %d.%d s)\n' \
                "$cpus" "$mem_mb" "$partition" "$urgent" $((ms / 1000)) $((ms % 1000 / 100))
            return 0
        fi
        # A node left down or drained by an earlier run (e.g. another RealMemory): bring it back.
        state=$(node_state)
        if [[ $state =~ ^(down|drain) ]]; then
            scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.2
    done
    die "the node is not up after 30 s (sinfo says: ${state:-nothing}); see $logs/slurmctld.log and $logs/slurmd.log"
}

case "${1:-}" in
    start) start ;;
    stop) stop_daemons; echo "slurm: stopped" ;;
    status) is_up ;;
    *) echo "usage: bash scripts/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
