#!/usr/bin/env bash
# Reproduces the worked example of docs/tutorials/cocktails.md: the cocktail search (Kadra et al.
# 2021) against the baseline and two single regularizers, each tuned with the same budget
# (+search=each: one study per regularizer and dataset, the same trials, paired seeds and
# sampler seed), on the six bundled datasets (four classification, two regression), trained
# stacked; then `regbench study` over all of it. The CD diagram is copied to docs/.
# Usage: bash scripts/cocktail_example.sh [OUT_DIR]
# (the time it took is in docs/tutorials/cocktails.md, with the machine and the date)
set -euo pipefail
out=${1:-outputs/cocktail_example}
datasets=breast_cancer,wine,diabetes,synthetic,synthetic_regression,digits
# The singles must be valid on every dataset (the sweeper refuses the whole command before any
# run otherwise): mixup and label smoothing are refused on the regressions, augmentation on tables.
# A small budget, to keep it to minutes on 2 CPU cores: 12 trials a study (8, then 4 asked after
# the first 8 are told), 3 paired seeds, at most 60 epochs (early stopping on, patience 10).
regbench run -m reg=none,l2,dropout,cocktail dataset=$datasets +search=each \
    hydra.sweeper.n_trials=12 search.seeds=3 trainer.max_epochs=60 hydra/launcher=stacked \
    hydra.sweep.dir="$out/search"
regbench study "$out/search" --out "$out/study"
mkdir -p docs
cp "$out/study/cd.png" docs/cocktail_cd.png
