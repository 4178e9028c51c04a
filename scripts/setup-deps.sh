#!/usr/bin/env bash
# Installs every Debian package Weft builds, tests or benchmarks with. Idempotent:
# packages already present are skipped without touching apt's lists.
# Usage: scripts/setup-deps.sh            (needs root or sudo)
set -euo pipefail

PKGS=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git
  # transport backends
  libibverbs-dev librdmacm-dev rdma-core ibverbs-providers libucx-dev ucx-utils
  # topology
  libhwloc-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # launchers we interoperate with (bootstrap tests) and multi-node tests
  openmpi-bin libopenmpi-dev iproute2 procps psmisc python3
  # the PyTorch process-group backend (torch/; Debian's torch 1.13 for /usr/bin/python3)
  python3-torch libtorch-dev pybind11-dev python3-dev
  # soft-RoCE VMs for the verbs tests and benchmarks (scripts/softroce/; the guest kernel
  # .deb is downloaded there, into /tmp/softroce)
  qemu-system-x86 busybox-static ibverbs-utils perftest kmod cpio gzip xz-utils util-linux
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-deps: done"
