"""Train and test Conv2d, DeformConv2d and DeformConv2dv2 over several seeds and compare them.

python compare.py --config config/compare_cpu-quick.json   (writes <outdir>/comparison.md and figures)
"""
from utils.cli import config_main
from utils.config import CompareConfig

if __name__ == "__main__":
    config_main(CompareConfig, "utils.compare:compare", __doc__.splitlines()[0], "config/compare_cpu-quick.json")
