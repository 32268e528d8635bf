#!/usr/bin/env bash
# A TPU VM pod slice: the same command on every worker; JAX finds the pod topology itself.
#   launch/tpu_pod.sh my-tpu us-central2-b --config=configs/metaworld.py --workdir=gs://bucket/runs/mw
# Install first on every worker: pip install -r requirements.txt -e . && pip install -U "jax[tpu]"
set -euo pipefail
tpu=$1; zone=$2; shift 2
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all \
  --command="cd clam_jax && python -m clam_jax.train --distributed $*"
