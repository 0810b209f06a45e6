"""Hand each run of a protocol to a scheduler through submitit: launcher "slurm" (a SLURM cluster) or
"submitit-local" (the same jobs as processes on this machine, for trying it out).

One job per (variant, seed) that is not finished and tested, each asking for the config's `cluster`
resources; this process waits for all of them, then compare.py aggregates as it does locally. Each job
takes its run's lock (utils/plumbing/locks.py), so a second submission, or a compare.py running locally
at the same time, never trains a run twice. Job logs: <outdir>/submitit/<job id>_0_log.out|err.
"""
from utils.plumbing.errors import UserError, require
from utils.plumbing.runs import ProtocolLayout


def make_executor(cfg):
    submitit = require("submitit", f'"launcher": "{cfg.launcher}"')
    folder = ProtocolLayout(cfg.outdir).file("submitit")
    resources = cfg.cluster
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if cfg.launcher == "slurm" else "local")
    except Exception as e:  # noqa: BLE001 -- e.g. no sbatch on this machine
        raise UserError(f'"launcher": "{cfg.launcher}" cannot submit from this machine ({type(e).__name__}: {e}); '
                        'run compare.py on the cluster\'s login node, or use "launcher": "local"')
    params = {"name": f"dcn-{cfg.protocol}", "timeout_min": resources.time_min, "cpus_per_task": resources.cpus, "mem_gb": resources.mem_gb,
              "gpus_per_node": resources.gpus}
    if cfg.launcher == "slurm":
        params["slurm_partition"] = resources.partition
    executor.update_parameters(**params)
    return executor, folder


def submit_all(cfg, job, runs):
    """Submit job(cfg, variant, seed) for each (variant, seed) of `runs`; wait; raise one UserError if any failed."""
    if not runs:
        print(f"[{cfg.protocol}] every run is trained and tested already")
        return
    executor, folder = make_executor(cfg)
    try:
        with executor.batch():
            jobs = [executor.submit(job, cfg, name, seed) for name, seed in runs]
    except Exception as e:  # noqa: BLE001 -- sbatch refused (unknown partition, over a limit, ...)
        raise UserError(f'"launcher": "{cfg.launcher}": submitting failed ({type(e).__name__}: {str(e).splitlines()[0][:300]}); check "cluster"')
    print(f"[{cfg.protocol}] submitted {len(jobs)} jobs ({', '.join(j.job_id for j in jobs)}), one per run; logs in {folder}", flush=True)
    failed = []
    for j, (name, seed) in zip(jobs, runs):
        try:
            j.result()
            print(f"[{cfg.protocol}] job {j.job_id} ({name}, seed {seed}) finished", flush=True)
        except Exception as e:  # noqa: BLE001 -- a job's own error, reported with where its log is
            failed.append(f"{name} seed {seed} (job {j.job_id}: {str(e).strip().splitlines()[-1][:200]})")
    if failed:
        raise UserError(f"{len(failed)} of {len(jobs)} jobs failed: {'; '.join(failed)}; their logs are in {folder}; "
                        "submit again to resume them (finished runs are kept)")
