"""Train and test every model variant over several seeds and compare them.

python compare.py --config config/compare_cpu-quick.json   (writes <outdir>/comparison.md and figures)
python compare.py --config A.json B.json                    (a queue: A's runs, then B's; each resumes where it stopped; runs another worker
                                                             holds are waited for after both)
python compare.py --config A.json B.json --status           (where the queue stands and the time left; trains nothing)
"""
from utils.cli import config_main
from utils.plumbing.config import CompareConfig


def run(*cfgs, status=False):
    from utils.experiments import compare  # after the configs are checked: torch loads here

    if status:
        for cfg in cfgs:
            compare.status(cfg)
    else:
        compare.compare(*cfgs)


if __name__ == "__main__":
    config_main(CompareConfig, run, __doc__.splitlines()[0], "config/compare_cpu-quick.json", several=True,
                flags={"status": "print where each protocol's runs stand and the time left, from the files; trains nothing"})
