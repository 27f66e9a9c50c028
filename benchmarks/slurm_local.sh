#!/usr/bin/env bash
# A single-node Slurm on this machine, for trying neuroalign's cluster="slurm" path
# (benchmarks/bench_slurm.py) against a real scheduler. NOT for CI, not a cluster: one
# node (this host), no cgroups, no accounting database, daemons run as root.
#
#   sudo benchmarks/slurm_local.sh install   # apt-get install slurm-wlm munge (Debian/Ubuntu)
#   sudo benchmarks/slurm_local.sh start     # write the config, start munged, slurmctld, slurmd
#   benchmarks/slurm_local.sh status         # sinfo, squeue
#   sudo benchmarks/slurm_local.sh stop      # stop the three daemons (by their pid files)
#
# Idempotent: start does nothing more when the daemons already run; the config
# (/etc/slurm/slurm.conf) is written only when absent or written by this script before (it
# carries a marker line); state, logs and pid files live under $SLURM_LOCAL_DIR
# (default /var/spool/neuroalign-slurm). CPUS and MEM_MB (defaults 2 and 16000) size the node.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/var/spool/neuroalign-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by neuroalign benchmarks/slurm_local.sh"
HOST=$(hostname -s)
CPUS=${CPUS:-2}
MEM_MB=${MEM_MB:-16000}

need_root() { [ "$(id -u)" = 0 ] || { echo "slurm_local.sh $1: run as root" >&2; exit 1; }; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        echo "slurm_local.sh: $CONF exists and was not written by this script; not touched" >&2
        exit 1
    fi
    mkdir -p "$DIR/ctld" "$DIR/d" "$DIR/log" /etc/slurm
    cat > "$CONF.tmp" <<CONF
$MARKER
ClusterName=neuroalign-local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=600
DefMemPerCPU=2000
KillWait=5
SlurmdTimeout=60
InactiveLimit=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF.tmp" "$CONF"
}

start() {
    need_root start
    command -v slurmctld >/dev/null || { echo "slurm not installed: $0 install" >&2; exit 1; }
    write_conf
    if ! alive /run/munge/munged.pid; then
        mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
        runuser -u munge -- /usr/sbin/munged
    fi
    alive "$DIR/slurmctld.pid" || slurmctld
    alive "$DIR/slurmd.pid" || slurmd
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
        case "$state" in idle*|mixed*|alloc*) break ;; esac
        sleep 1
    done
    case "$state" in
        idle*|mixed*|alloc*) ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME || true ;;
        *) echo "slurm_local.sh: node $HOST is ${state:-not answering}; see $DIR/log" >&2; exit 1 ;;
    esac
    sinfo
}

stop() {
    need_root stop
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" /run/munge/munged.pid; do
        if alive "$pidfile"; then
            pid=$(cat "$pidfile"); kill "$pid"
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
    done
    echo "stopped (slurmd, slurmctld, munged)"
}

case "${1:-}" in
    install) need_root install; DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge ;;
    start) start ;;
    stop) stop ;;
    status) sinfo; squeue ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
