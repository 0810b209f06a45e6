"""Train and test every model variant over several seeds and compare them.

python compare.py --config config/compare_cpu-quick.json   (writes <outdir>/comparison.md and figures)
python compare.py --config A.json B.json                    (a queue: A's runs, then B's; each resumes where it stopped)
"""
from utils.cli import config_main
from utils.plumbing.config import CompareConfig


def run(cfg):
    from utils.experiments.compare import compare  # after the config is checked: torch loads here

    compare(cfg)


if __name__ == "__main__":
    config_main(CompareConfig, run, __doc__.splitlines()[0], "config/compare_cpu-quick.json", several=True)
