"""The regularizers: one module each, with its knobs and where it acts on training."""
