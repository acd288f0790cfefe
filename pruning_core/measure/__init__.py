"""Measured: parameter and FLOP counts, effective sparsity, adversarial accuracy."""
