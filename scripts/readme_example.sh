#!/usr/bin/env bash
# Reproduces the example report of docs/explanation/benchmark.md (once the README's): a 27-job strength sweep and its 3-seed
# baseline on 300 digits training samples, merged into one report with a pivot and plots.
# Usage: bash scripts/readme_example.sh [OUT_DIR]   (30 runs of up to 200 epochs: minutes on 2 CPU cores)
set -euo pipefail
out=${1:-outputs/readme_example}
common=(dataset.train_size=300 seed=0,1,2)
regbench run -m reg=l1,l2,elasticnet reg.alpha=1e-4,1e-3,1e-2 "${common[@]}" hydra.sweep.dir="$out/penalties"
regbench run -m reg=none "${common[@]}" hydra.sweep.dir="$out/baseline"
regbench report "$out/penalties" "$out/baseline" --out "$out/report" --format md --pivot reg.alpha --metric gap.acc --plots
