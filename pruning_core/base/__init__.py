"""The floor: errors, the generic registry, name suggestions, seeded RNG, the code-trust rule and
the metric table. Imports nothing else of pruning_core."""
