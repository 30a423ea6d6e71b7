"""Training: typed config, task datasets, Trainer wiring and callbacks (shared by all families)."""
