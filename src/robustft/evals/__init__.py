"""Evaluation: task metrics (and, later, generation, judges and lm-eval)."""
