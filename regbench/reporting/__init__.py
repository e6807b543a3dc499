"""From run folders to tables, statistics and plots (`regbench report`)."""
