"""Experiments on the engine: compare.py (variants x seeds, statistics, figures), benchmark.py (cost), offsets.py (what the offsets learned)."""
