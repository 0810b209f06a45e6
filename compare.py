"""Train and test every model variant over several seeds and compare them.

python compare.py --config config/compare_cpu-quick.json   (writes <outdir>/comparison.md and figures)
python compare.py --config A.json B.json                    (a queue: A's runs, then B's; each resumes where it stopped)
python compare.py --config A.json B.json --status           (where the queue stands and the time left; trains nothing)
"""
from utils.cli import config_main
from utils.plumbing.config import CompareConfig


def run(cfg, status=False):
    from utils.experiments import compare  # after the config is checked: torch loads here

    compare.status(cfg) if status else compare.compare(cfg)


if __name__ == "__main__":
    config_main(CompareConfig, run, __doc__.splitlines()[0], "config/compare_cpu-quick.json", several=True,
                flags={"status": "print where each protocol's runs stand and the time left, from the files; trains nothing"})
