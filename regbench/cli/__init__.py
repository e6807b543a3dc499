"""The command line: the `regbench` entry, the Hydra app and its callbacks (the schema and its checks: regbench.config)."""
