"""Configuration at the ground floor: the typed schema Hydra composes into (schema), what is known
about each key (keys), the checks of a composed config (checks), where the configs are (paths)
and composition errors as one line (errors). Imports nothing from the engine, results, reporting
or the command line."""
