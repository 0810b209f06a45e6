"""Everything around the models, by role:

- engine/: the training engine — data, the training loop, evaluation, checkpoints, device and op choice;
- experiments/: what is built on it — compare (seeds, statistics, figures), benchmark, offsets figure;
- plumbing/: command line, configs, errors, atomic files and the results layout (no torch imported).
"""
