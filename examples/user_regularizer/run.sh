#!/usr/bin/env bash
# Compares the max-norm constraint (maxnorm.py, a regularizer of the user's own) with no
# regularizer and with L2, on 300 digits training samples, three seeds each, in stacked
# sweeps, and prints the report against the baseline.
# Usage: bash examples/user_regularizer/run.sh [OUT_DIR [OVERRIDE ...]]   (extra overrides go to every run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-outputs/user_regularizer}
common=(--config-dir "$here" hydra/launcher=stacked dataset.train_size=300 seed=0,1,2 "${@:2}")
regbench run -m "${common[@]}" reg=maxnorm reg.extra.maxnorm.max_norm=0.5,1,2 hydra.sweep.dir="$out/maxnorm"
regbench run -m "${common[@]}" reg=none,l2 hydra.sweep.dir="$out/baselines"
regbench report "$out/maxnorm" "$out/baselines" --baseline none --out "$out/report" --format md
