"""The command line: the `regbench` entry, the Hydra app, its callbacks, the config schema and its errors."""
