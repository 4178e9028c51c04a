#!/bin/sh
# Two fake hosts for multi-node tests: network namespaces weftA and weftB, each joined to the
# root namespace through a veth pair on a bridge.
#
#   scripts/netns-hosts.sh up       create them (replacing leftovers of an earlier run)
#   scripts/netns-hosts.sh down     remove them (no error when they do not exist)
#   scripts/netns-hosts.sh status   show them
#
#   root namespace   bridge weftbr0   10.201.0.1/24
#   weftA            weft0            10.201.0.2/24   (+ lo up)
#   weftB            weft0            10.201.0.3/24   (+ lo up)
#
# No default route and no forwarding: a namespace reaches 10.201.0.0/24 and its loopback only.
# Then, for example (the store listens on 10.201.0.1 in the root namespace):
#   weft-run -n 4 --hosts weftA:2,weftB:2 --rsh "ip netns exec {host}" \
#            --store-addr 10.201.0.1 -- build/bin/weft-info --whoami
#
# Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2. Override the names and subnet
# with WEFT_NETNS_PREFIX (default "weft") and WEFT_NETNS_SUBNET (default "10.201.0").
set -eu

PREFIX=${WEFT_NETNS_PREFIX:-weft}
SUBNET=${WEFT_NETNS_SUBNET:-10.201.0}
BRIDGE=${PREFIX}br0
HOSTS="${PREFIX}A ${PREFIX}B"

die() {
  echo "netns-hosts.sh: $*" >&2
  exit 1
}

host_ip() {  # weftA -> .2, weftB -> .3
  case "$1" in
    *A) echo "$SUBNET.2" ;;
    *B) echo "$SUBNET.3" ;;
  esac
}

down() {
  for ns in $HOSTS; do
    ip link del "${ns}-h" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  command -v ip >/dev/null 2>&1 || die "iproute2 (ip) is not installed"
  down
  # Refuse a subnet this machine already uses elsewhere.
  if ip -4 route show to "$SUBNET.0/24" 2>/dev/null | grep -q . ||
     ip -4 addr show 2>/dev/null | grep -q "inet $SUBNET\."; then
    die "subnet $SUBNET.0/24 is already in use here; set WEFT_NETNS_SUBNET"
  fi
  trap 'down' EXIT
  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ns in $HOSTS; do
    ip netns add "$ns"
    ip link add "${ns}-h" type veth peer name weft0 netns "$ns"
    ip link set "${ns}-h" master "$BRIDGE"
    ip link set "${ns}-h" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(host_ip "$ns")/24" dev weft0
    ip -n "$ns" link set weft0 up
  done
  # Check that both namespaces reach the root side (when ping is installed; bounded).
  command -v ping >/dev/null 2>&1 || { trap - EXIT; return 0; }
  for ns in $HOSTS; do
    i=0
    until ip netns exec "$ns" ping -c 1 -W 1 "$SUBNET.1" >/dev/null 2>&1; do
      i=$((i + 1))
      [ "$i" -lt 5 ] || die "namespace $ns cannot reach $SUBNET.1"
    done
  done
  trap - EXIT
}

status() {
  ip link show "$BRIDGE" 2>/dev/null || echo "no bridge $BRIDGE"
  for ns in $HOSTS; do
    echo "--- $ns"
    ip -n "$ns" -4 addr show 2>/dev/null || echo "no namespace $ns"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
