"""Configuration at the ground floor: the typed schema Hydra composes into, with the one
declaration of every key on its field (schema; what a declaration holds: declare), the table
of every key and what is derived from it: the run identity's keys, the stacking key's, the
report's "only for", the back-fill of older runs, the range checks (keys), the checks of a
composed config, run once where Hydra composes it (checks), where the configs are (paths) and
composition errors as one line (errors). Imports nothing from the engine, results, reporting
or the command line."""
