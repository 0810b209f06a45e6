"""Everything around the models, by role:

- cli.py: what the top-level scripts run (arguments, config loading, one-line errors);
- engine/: the training engine — data, the training loop, evaluation, checkpoints, device and op choice;
- experiments/: what is built on it — compare (seeds, statistics, figures), benchmark, offsets figure;
- plumbing/: configs, errors, atomic files and the results layout (no torch imported).
"""
