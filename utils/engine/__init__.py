"""The training engine: data (data.py) -> model (models/) -> loss and loop (train.py) -> evaluation
(evaluate.py), with checkpoints, the choice of device and op, and the per-run figures (plots.py)."""
