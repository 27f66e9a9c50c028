#!/usr/bin/env bash
# Two more network hosts on this machine, for trying neuroalign's cluster path across hosts:
# network namespaces na-node2 (10.77.0.2) and na-node3 (10.77.0.3) on a bridge na-br0
# (10.77.0.1, this host's side). A process started with `ip netns exec na-node2 ...` has its
# own address and reaches this host (and the other namespace) only through the bridge, as a
# process on another node would through the cluster's network; the file system is shared,
# as a cluster's shared file system is.
#
#   sudo benchmarks/netns_nodes.sh up      # create them (idempotent)
#   sudo benchmarks/netns_nodes.sh down    # remove them
#   sudo benchmarks/netns_nodes.sh python  # print the path of a python wrapper that runs
#                                          # this venv's python in na-node2 or na-node3
#                                          # (chosen by $SLURM_JOB_ID's parity)
set -euo pipefail
BR=na-br0
NODES=(na-node2 na-node3)
WRAPPER=/tmp/neuroalign-netns-python

need_root() { [ "$(id -u)" = 0 ] || { echo "netns_nodes.sh: run as root" >&2; exit 1; }; }

up() {
  need_root
  ip link show "$BR" >/dev/null 2>&1 || {
    ip link add "$BR" type bridge
    ip addr add 10.77.0.1/24 dev "$BR"
    ip link set "$BR" up
  }
  local i=2
  for ns in "${NODES[@]}"; do
    if ! ip netns list | grep -qw "$ns"; then
      ip netns add "$ns"
      ip link add "veth-$i" type veth peer name eth0 netns "$ns"
      ip link set "veth-$i" master "$BR" up
      ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      ip -n "$ns" route add default via 10.77.0.1
    fi
    i=$((i + 1))
  done
  python_wrapper >/dev/null
  ip -br addr show "$BR"
  for ns in "${NODES[@]}"; do echo "$ns: $(ip -n "$ns" -br addr show eth0)"; done
}

down() {
  need_root
  for ns in "${NODES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
  rm -f "$WRAPPER"
}

python_wrapper() {
  local py
  py="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
  cat > "$WRAPPER" <<EOF
#!/bin/sh
# this venv's python, in network namespace na-node2 or na-node3 (by the Slurm job id)
n=\$(( \${SLURM_JOB_ID:-0} % 2 + 2 ))
exec ip netns exec na-node\$n "$py" "\$@"
EOF
  chmod 755 "$WRAPPER"
  echo "$WRAPPER"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  python) python_wrapper ;;
  *) echo "usage: $0 up|down|python" >&2; exit 2 ;;
esac
