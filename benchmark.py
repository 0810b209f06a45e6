"""Measure time, memory and parameters of Conv2d / DeformConv2d / DeformConv2dv2 for each deformable backend.

python benchmark.py --config config/benchmark.json   (writes result/benchmark.json and result/benchmark.md)
"""
import argparse

from utils.cli import run_cli
from utils.config import BenchmarkConfig, load_config

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="benchmark config JSON, e.g. config/benchmark.json")
    args = parser.parse_args()

    def main():
        from utils.benchmark import run_benchmark

        run_benchmark(load_config(args.config, BenchmarkConfig))

    run_cli(main)
