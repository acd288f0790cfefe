"""Trained: the training loop, pruning timings, the experiment that runs one trial, the dense
cache and reference, the registries' catalogue (``load_trial_config``) and tuned schedules."""
