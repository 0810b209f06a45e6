"""Measure time, memory and parameters of Conv2d / DeformConv2d / DeformConv2dv2 for each deformable backend.

python benchmark.py --config config/benchmark.json   (writes result/benchmark.json and result/benchmark.md)
"""
from utils.cli import config_main
from utils.config import BenchmarkConfig

if __name__ == "__main__":
    config_main(BenchmarkConfig, "utils.benchmark:run_benchmark", __doc__.splitlines()[0], "config/benchmark.json")
