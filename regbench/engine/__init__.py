"""The training engine: the loop, stacked training, checkpoints, interrupts and folder locks."""
