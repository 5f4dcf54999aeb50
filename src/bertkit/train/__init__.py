"""Training: trainer, optimisation blocks, metrics and plots."""
