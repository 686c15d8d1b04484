#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine (Debian 12 slurm-wlm + munge), so
# tests/workflow/test_slurm.py can run the workflow through `snakemake --profile slurm`. Idempotent: a
# second call finds the node up and returns. Needs root (it installs packages and writes /etc/slurm).
# Steps: install slurm-wlm and munge, write a munge key and a one-node slurm.conf, start munged,
# slurmctld and slurmd, wait for the node.
# No accounting database: sacct does not work here, so the executor plugin runs with
# --slurm-status-command squeue.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "slurm-cluster.sh: must run as root (installs slurm-wlm and munge, writes /etc/slurm)" >&2
    exit 1
fi

node_idle() {
    # %t is the compact node state; a busy node (alloc/mix) is up as well.
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)$'
}

if command -v sinfo >/dev/null && node_idle; then
    echo "slurm-cluster.sh: cluster already up"
    sinfo
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
[ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key

host=$(hostname)
cpus=$(nproc)
# slurmd drains a node that reports less memory than RealMemory: leave 1 GiB of headroom.
memory_mib=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
# Addresses are given as 127.0.0.1, so a container whose hostname does not resolve still works.
cat > /etc/slurm/slurm.conf <<EOF
# Written by robustft .ci/slurm-cluster.sh: one node, no accounting database.
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory_mib} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF

# Start each daemon only when it is not already answering, so a rerun does not start a second copy.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    su -s /bin/sh munge -c munged
fi
if ! scontrol ping 2>/dev/null | grep -q UP; then
    slurmctld
fi
if [ ! -s /run/slurmd.pid ] || ! kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; then
    slurmd
fi

for _ in $(seq 60); do
    if node_idle; then
        echo "slurm-cluster.sh: node ${host} up (${cpus} CPUs, ${memory_mib} MiB)"
        sinfo
        exit 0
    fi
    sleep 1
done
echo "slurm-cluster.sh: node did not become idle within 60 s" >&2
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
