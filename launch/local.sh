#!/usr/bin/env bash
# Runs N JAX processes of one command on this machine, forming one multi-process run
# (CPU collectives over gloo). Every process gets the same arguments plus its id;
# $PYTHON (default: python) runs them.
#   launch/local.sh 2 -m clam_jax.train --config=configs/metaworld.py:tiny --workdir=runs/mp
set -euo pipefail
n=$1; shift
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
for ((i = 0; i < n; i++)); do
  "${PYTHON:-python}" "$@" --distributed --coordinator_address="127.0.0.1:$port" --num_processes="$n" --process_id="$i" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
