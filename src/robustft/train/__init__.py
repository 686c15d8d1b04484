"""Training: Trainer wiring, callbacks and the run directory contract."""
