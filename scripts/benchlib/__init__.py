"""The parts of scripts/bench.py, one module per measurement; scripts/bench.py is the entry
(its options, the order of the parts, the report's assembly).

- common: config composition, the MNIST root, CpuWatch, the matmul peak, spreads, device syncs
- loops: (a) and (b), the runner against the tutorials' loop and the minimal loop
- stacking: (c), the stacked sweep, stacks by size, the sweep from the shell
- regularizers: (d), what each regularizer costs, its rows derived from the registry
- memory: the peak memory of run (b)
- startup: the CLI's start-up and a whole default run from the shell
- cluster: (e), a sweep on a SLURM cluster from the shell
- search: (f), an Optuna search from the shell, its trials stacked against one at a time
- report: the printed report and the targets
"""
