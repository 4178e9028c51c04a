#!/usr/bin/env bash
# Ranks started by other launchers find rank, size, local rank and node without weft-run:
# Debian's Open MPI mpirun, and faked Slurm and torchrun environments.
# usage: launcher_conventions.sh BIN_DIR
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR}
INFO="$BIN/weft-info"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.out; do echo "--- $f"; cat "$f"; done; exit 1; }
expect() {  # expect FILE REGEX...
  local f=$1; shift
  for re in "$@"; do grep -Eq "$re" "$f" || fail "'$re' not in $f"; done
}
unset WEFT_RANK WEFT_WORLD_SIZE WEFT_LOCAL_RANK WEFT_LOCAL_SIZE WEFT_STORE_ADDR WEFT_JOB_ID \
  WEFT_NODE_ID RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT
export WEFT_TIMEOUT=30

echo "--- Open MPI: mpirun -n 2 --oversubscribe"
if command -v mpirun >/dev/null; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
    timeout 60 mpirun -n 2 --oversubscribe "$INFO" --whoami >"$tmp/ompi.out" 2>&1 ||
    fail "mpirun exited $?"
  expect "$tmp/ompi.out" '^rank 0/2 local_rank 0/2 .*launcher openmpi' \
    '^rank 1/2 local_rank 1/2 .*launcher openmpi'
else
  fail "mpirun not installed (scripts/setup-deps.sh installs openmpi-bin)"
fi

echo "--- faked Slurm: 3 tasks, 2 'nodes' (SLURMD_NODENAME), no SLURM local size"
for r in 0 1 2; do
  node=cn$((r / 2))
  env SLURM_PROCID=$r SLURM_NTASKS=3 SLURM_LOCALID=$((r % 2)) SLURM_JOB_ID=$$ SLURM_STEP_ID=0 \
    SLURMD_NODENAME=$node TMPDIR="$tmp" timeout 60 "$INFO" --whoami >"$tmp/slurm$r.out" 2>&1 &
done
wait || true
cat "$tmp"/slurm*.out >"$tmp/slurm.all"
expect "$tmp/slurm.all" '^rank 0/3 local_rank 0/2 node cn0 \(index 0 of 2\).*launcher slurm' \
  '^rank 1/3 local_rank 1/2 node cn0 \(index 0 of 2\)' \
  '^rank 2/3 local_rank 0/1 node cn1 \(index 1 of 2\)'

echo "--- faked torchrun: rank 0 serves the store at MASTER_PORT+1"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for r in 0 1; do
  env RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
    MASTER_PORT=$((port - 1)) timeout 60 "$INFO" --whoami >"$tmp/torch$r.out" 2>&1 &
done
wait || true
cat "$tmp"/torch*.out >"$tmp/torch.all"
expect "$tmp/torch.all" '^rank 0/2 local_rank 0/2 .*launcher torchrun' \
  '^rank 1/2 local_rank 1/2 .*launcher torchrun'
echo "launcher conventions: OK"
