"""Train and test Conv2d, DeformConv2d and DeformConv2dv2 over several seeds and compare them.

python compare.py --config config/compare_cpu-quick.json   (writes <outdir>/comparison.md and figures)
"""
import argparse

from utils.cli import run_cli
from utils.config import CompareConfig, load_config

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="compare config JSON, e.g. config/compare_cpu-quick.json")
    args = parser.parse_args()

    def main():
        from utils.compare import compare

        compare(load_config(args.config, CompareConfig))

    run_cli(main)
