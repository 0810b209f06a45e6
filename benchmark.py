"""Measure time, memory and parameters of every model variant for each deformable backend.

python benchmark.py --config config/benchmark.json   (writes result/benchmark.json and result/benchmark.md)
"""
from utils.cli import config_main
from utils.plumbing.config import BenchmarkConfig


def run(cfg):
    from utils.cost.models import run_benchmark  # after the config is checked: torch loads here

    run_benchmark(cfg)


if __name__ == "__main__":
    config_main(BenchmarkConfig, run, __doc__.splitlines()[0], "config/benchmark.json")
