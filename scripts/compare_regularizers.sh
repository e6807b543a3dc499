#!/usr/bin/env bash
# Reproduces the comparison (docs/explanation/benchmark.md) of the standard regularizers: every preset of conf/reg/
# (and EMA at the decay the digits need) on the embedded default (digits, MLP 64-256-128-10,
# Adam), three seeds each, stacked, then one report against the baseline reg=none.
# Usage: bash scripts/compare_regularizers.sh [OUT_DIR]   (51 runs: about 50 s on 2 CPU cores)
# trainer.max_epochs=60 is the budget SWA's fraction refers to (averaging from epoch 46); early
# stopping (patience 10) ends most other runs well before it.
set -euo pipefail
out=${1:-outputs/compare_regularizers}
common=(seed=0,1,2 trainer.max_epochs=60 hydra/launcher=stacked)
regbench run -m reg=none,l1,l2,weight_decay,dropout,batchnorm,label_smoothing,augment,mixup,cutmix,cutout,input_noise,ema,swa,sam,asam \
    "${common[@]}" hydra.sweep.dir="$out/presets"
regbench run -m reg=ema reg.ema=0.99 "${common[@]}" hydra.sweep.dir="$out/ema_0.99"
regbench report "$out/presets" "$out/ema_0.99" --out "$out/report" --format md
