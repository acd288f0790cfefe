"""What is pruned and trained on: model and dataset registries, the user's factories, weights
files, the device loader and augmentation. Imports ``base`` and ``config`` only."""
