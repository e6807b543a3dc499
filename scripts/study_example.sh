#!/usr/bin/env bash
# Reproduces the worked study of docs/tutorials/study.md: four regularizers, each
# with a few strengths, on six bundled datasets (four classification, two regression) over three
# seeds, trained stacked, then `regbench study` over all of it. The CD diagram and the
# performance profiles are copied to docs/.
# Usage: bash scripts/study_example.sh [OUT_DIR]   (180 runs of at most 60 epochs: 1 min 28 s on 2 CPU cores, 2026-12-07)
set -euo pipefail
out=${1:-outputs/study_example}
datasets=digits,wine,breast_cancer,synthetic,diabetes,synthetic_regression
# At most 60 epochs, patience 10, to keep it to minutes: most runs reach the cap (every wine, digits
# and synthetic_regression run did, measured), so these are short-training numbers; synthetic
# stops early (epoch 25 on average).
common=(hydra/launcher=stacked dataset=$datasets seed=0,1,2 trainer.max_epochs=60 model.hidden_sizes=[64] device=cpu)
regbench run -m reg=none "${common[@]}" hydra.sweep.dir="$out/none"
regbench run -m reg=l1 reg.alpha=1e-4,1e-3,1e-2 "${common[@]}" hydra.sweep.dir="$out/l1"
regbench run -m reg=l2 reg.alpha=1e-4,1e-3,1e-2 "${common[@]}" hydra.sweep.dir="$out/l2"
regbench run -m reg=dropout reg.dropout=0.1,0.3,0.5 "${common[@]}" hydra.sweep.dir="$out/dropout"
regbench study "$out" --out "$out/study" --rope 0.01
mkdir -p docs
cp "$out/study/cd.png" docs/study_cd.png
cp "$out/study/profiles.png" docs/study_profiles.png
