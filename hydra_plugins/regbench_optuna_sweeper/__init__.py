"""regbench's Optuna sweeper (`hydra/sweeper=regbench_optuna`, the conf/search/ presets).

Trials asked of Optuna's ask-and-tell API in batches, each trial's paired seeds handed to the
launcher as ordinary jobs (so the stacked launcher trains a batch as stacks), pruned on paired
seeds with Optuna's WilcoxonPruner, one study per regularizer under `+search=each`, and studies
kept in a SQLite file of the sweep folder that a re-launch continues. See sweeper.py.
"""
