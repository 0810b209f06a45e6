"""Sweeps beyond one process: run locks, and real concurrent workers through submitit's local executor."""
import json
import multiprocessing as mp
import os
import runpy
import socket
import subprocess
import sys
import time

import cloudpickle
import pytest
from conftest import ROOT, write_config
from test_compare_and_offsets import tiny_compare_config

from utils.experiments import compare as compare_mod
from utils.experiments.cluster import submit_all
from utils.plumbing.config import CompareConfig, parse_config
from utils.plumbing.errors import UserError
from utils.plumbing.locks import LockHeld, RunLock
from utils.plumbing.runs import ProtocolLayout

submitit = pytest.importorskip("submitit")
TESTS = ROOT / "tests"


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid  # finished and reaped: no process has it now (pids are not reused this quickly)


def test_a_held_lock_names_its_holder_and_is_released(tmp_path):
    lock = RunLock(tmp_path / "run" / "lock").acquire()
    holder = json.loads((tmp_path / "run" / "lock").read_text())
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
    with pytest.raises(LockHeld, match=f"held by pid {os.getpid()} on {socket.gethostname()} since "):
        RunLock(tmp_path / "run" / "lock").acquire(wait=False)
    lock.release()
    assert not (tmp_path / "run" / "lock").exists()
    RunLock(tmp_path / "run" / "lock").acquire(wait=False).release()


def test_a_lock_of_a_dead_process_or_a_silent_node_is_taken_over(tmp_path, capsys):
    path = tmp_path / "lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "since": "then", "token": "old"}))
    lock = RunLock(path).acquire(wait=False)
    assert json.loads(path.read_text())["token"] == lock.holder["token"] and "took over the stale lock" in capsys.readouterr().out
    lock.release()
    # Another node's lock: its process cannot be checked from here, so only its silence (no heartbeat) counts.
    path.write_text(json.dumps({"host": "node-17", "pid": 1, "since": "then", "token": "other"}))
    with pytest.raises(LockHeld, match="node-17"):
        RunLock(path, stale_after=60).acquire(wait=False)
    past = time.time() - 120
    os.utime(path, (past, past))
    RunLock(path, stale_after=60).acquire(wait=False).release()


def test_the_progress_line_sees_every_workers_epochs_and_counts_live_workers(tmp_path):
    """Two compare.py workers share a protocol: each one's progress line must count the other's epochs (read from
    disk) and hand the work left to the live workers only (a dead worker's lock does not count)."""
    layout = ProtocolLayout(tmp_path)
    jobs = [("A", 0), ("A", 1), ("B", 0)]
    mine = RunLock(layout.run("A", 0).lock).acquire()
    other = layout.run("A", 1)  # another worker's run: 2 epochs on disk, its lock left by a process that died
    host = {"cpu": "Xeon", "cpu_isa": "avx512", "cpus": 2, "torch_threads": 1, "device": "cpu"}
    other.write_record(variant="A", seed=1, num_epoch=4, epochs_done=2, trained=False, settings={},
                       segments=[{"epochs": [1, 1], "note": "no machine recorded"}, {"epochs": [2, 2], "host": host}])
    other.history_json.parent.mkdir(parents=True)
    other.history_json.write_text(json.dumps([{"epoch": e, "train_seconds": 50.0 * e, "val_seconds": 10.0} for e in (1, 2)]))
    other.lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "since": "then", "token": "old"}))
    done, measured, held = compare_mod.protocol_state(layout, jobs, 4)
    assert done == {("A", 0): 0, ("A", 1): 2, ("B", 0): 0} and held == [("A", 0)]
    assert measured == {"A": {None: [60.0], "Xeon (2 CPUs, avx512, 1 torch threads)": [110.0]}}  # each epoch at its segment's pace
    other.lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": "now", "token": "live"}))
    assert compare_mod.protocol_state(layout, jobs, 4)[2] == [("A", 0), ("A", 1)]
    mine.release()


def test_status_says_where_the_queue_stands_at_the_pace_of_the_workers_now_training(tmp_path, capsys):
    """compare.py --status, from the files alone: the pace is the one the held run's record names (a worker with one
    thread), not the shell's; a variant measured only at another pace borrows it, one never measured takes the
    median at this pace."""
    cfg = tiny_compare_config(tmp_path)  # Conv2d, DeformConv2d, DeformConv2dv2 x seeds 0, 1; 2 epochs each
    layout = ProtocolLayout(cfg.outdir)

    def partial(variant, threads, seconds):
        run = layout.run(variant, 0)
        host = {"cpu": "Xeon", "cpu_isa": "avx512", "cpus": 2, "torch_threads": threads, "device": "cpu"}
        run.write_record(variant=variant, seed=0, num_epoch=2, epochs_done=1, trained=False, settings={},
                         segments=[{"epochs": [1, 1], "host": host}])
        run.history_json.parent.mkdir(parents=True)
        run.history_json.write_text(json.dumps([{"epoch": 1, "train_seconds": seconds - 10.0, "val_seconds": 10.0}]))
        return run

    held = RunLock(partial("Conv2d", 1, 100.0).lock).acquire()
    partial("DeformConv2d", 2, 200.0)  # stopped: nobody holds it
    just_taken = RunLock(layout.run("DeformConv2dv2", 1).lock).acquire()  # a worker started it: in progress at epoch 0
    compare_mod.status(cfg)
    out = capsys.readouterr().out.splitlines()
    held.release()
    just_taken.release()
    # Conv2d 3 epochs x 100 s (its own pace), DeformConv2d 3 x 200 s (borrowed), DeformConv2dv2 4 x 100 s (median here);
    # the two held runs first (Conv2d seed 0: 100 s, DeformConv2dv2 seed 1: 200 s), then the queue's order: the first
    # worker free takes DeformConv2d seed 0 (to 300 s), the other DeformConv2dv2 seed 0 (400 s), then Conv2d seed 1
    # (500 s) and DeformConv2d seed 1 (400 + 400 s): the last worker finishes at 800 s.
    assert out[0] == ("[tiny] 0 of 6 runs trained, 3 in progress, 3 not started; 2 held by a worker now. Left: ~13m20s with "
                      "2 workers at the pace of Xeon (2 CPUs, avx512, 1 torch threads)")
    assert out[1:4] == ["  Conv2d seed 0: 1/2 epochs (a worker has it)", "  DeformConv2d seed 0: 1/2 epochs",
                        "  DeformConv2dv2 seed 1: 0/2 epochs (a worker has it)"]
    assert out[4:] == ["  Conv2d: 3 epochs to go; 1.7 min per epoch, the median of 1 measured at this pace",
                       "  DeformConv2d: 3 epochs to go; 3.3 min per epoch, the median of 1 measured at other paces (none at this one yet)",
                       "  DeformConv2dv2: 4 epochs to go; no epoch measured yet"]


def test_compare_script_status_flag_reads_and_writes_nothing(tmp_path, capsys, monkeypatch):
    raw = {"protocol": "tiny", "outdir": str(tmp_path / "cmp"), "seeds": [0, 1], "conv_ch": [4, 8], "num_epoch": 2,
           "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu"}
    monkeypatch.setattr(sys, "argv", ["compare.py", "--config", write_config(tmp_path / "c.json", raw), "--status"])
    runpy.run_path(str(ROOT / "compare.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("[tiny] 0 of 6 runs trained, 0 in progress, 6 not started; 0 held by a worker now. "
                          "Left: unknown until an epoch is measured with 1 worker at the pace of ")
    assert "  DeformConv2dv2: 4 epochs to go; no epoch measured yet" in out
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "data").exists()


def test_a_queue_waits_for_a_held_run_only_after_every_protocols_other_runs(tmp_path, capsys, monkeypatch):
    """A worker that met the first protocol's last run held by another worker used to wait for it there, idle, while the
    second protocol had runs nobody trained. Training and aggregation stand in here; the order of calls is the test."""
    calls = []

    def run_one(cfg, name, seed, wait, progress=None, head=None):
        calls.append(("wait" if wait else "train", cfg.protocol, name, seed))
        if (cfg.protocol, name, seed) == ("a", "Conv2d", 1) and not wait:
            raise LockHeld("lock", {"pid": 1, "host": "elsewhere", "since": "now"})

    monkeypatch.setattr(compare_mod, "run_one", run_one)
    monkeypatch.setattr(compare_mod, "aggregate", lambda cfg: calls.append(("aggregate", cfg.protocol)))
    paths = [write_config(tmp_path / f"{p}.json", {"protocol": p, "outdir": str(tmp_path / p), "seeds": [0, 1], "models": ["Conv2d"],
                                                  "num_epoch": 2, "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu"})
             for p in ("a", "b")]
    monkeypatch.setattr(sys, "argv", ["compare.py", "--config", *paths])
    runpy.run_path(str(ROOT / "compare.py"), run_name="__main__")
    assert calls == [("train", "a", "Conv2d", 0), ("train", "a", "Conv2d", 1),
                     ("train", "b", "Conv2d", 0), ("train", "b", "Conv2d", 1), ("aggregate", "b"),
                     ("wait", "a", "Conv2d", 1), ("aggregate", "a")]
    assert "[a] run 2/2: Conv2d, seed 1: another worker has it" in capsys.readouterr().out


def test_release_never_removes_a_lock_another_worker_took_over(tmp_path):
    path = tmp_path / "lock"
    lock = RunLock(path).acquire()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "now", "token": "theirs"}))  # what a takeover leaves
    lock.release()
    assert json.loads(path.read_text())["token"] == "theirs"


def _take(path, start, results):
    while time.time() < start:  # all at once
        pass
    try:
        RunLock(path).acquire(wait=False)  # held until this process exits
        results.put("took it")
    except LockHeld:
        results.put("held")


def test_of_many_workers_racing_for_a_stale_lock_exactly_one_wins(tmp_path):
    path = tmp_path / "lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "since": "then", "token": "old"}))
    ctx = mp.get_context("fork")
    results, start = ctx.Queue(), time.time() + 1.0
    workers = [ctx.Process(target=_take, args=(path, start, results)) for _ in range(6)]
    for w in workers:
        w.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join()
    assert outcomes == ["held"] * 5 + ["took it"]


# Workers are separate processes: they get the tests' synthetic data by running these functions, which
# cloudpickle ships by value (the job processes cannot import test modules).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _with_synthetic_data(fn, *args):
    sys.path.insert(0, str(TESTS))
    import conftest

    from utils.engine import data as data_mod

    data_mod.load_cifar10 = lambda data_dir, train, download: conftest.synthetic_set(200 if train else 50, seed=1 if train else 2)
    return fn(*args)


def worker(cfg):
    return _with_synthetic_data(compare_mod.compare, cfg)


def run_job(cfg, name, seed):
    return _with_synthetic_data(compare_mod.cluster_job, cfg, name, seed)


def comparable(outdir, cfg):
    """Everything the aggregate computes except wall-clock times."""
    rows, pairs = compare_mod.aggregate(cfg)
    timing = {"train_seconds_per_epoch", "train_seconds_fastest_epoch", "train_seconds_by_host", "inference_images_per_s"}
    histories = {}
    for name in cfg.models:
        for seed in cfg.seeds:
            run = ProtocolLayout(outdir).run(name, seed)
            histories[(name, seed)] = [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in json.loads(run.history_json.read_text())]
    return [{k: v for k, v in r.items() if k not in timing} for r in rows], pairs, histories


@pytest.mark.slow
def test_two_concurrent_workers_share_a_protocol_and_match_a_sequential_run(tmp_path, synthetic_data, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    options = {"models": ["Conv2d", "DeformConv2dv2"], "dcn_backend": "gather", "robustness": False}
    sequential = tiny_compare_config(tmp_path / "seq", **options)
    compare_mod.compare(sequential)

    shared = tiny_compare_config(tmp_path / "two", **options)
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=10, cpus_per_task=1)
    jobs = [executor.submit(worker, shared) for _ in range(2)]
    for job in jobs:
        job.result()
    for name in shared.models:
        for seed in shared.seeds:
            run = ProtocolLayout(shared.outdir).run(name, seed)
            record = json.loads(run.record.read_text())
            assert len(record["segments"]) == 1 and record["segments"][0]["epochs"] == [1, 2], record  # trained exactly once
            assert not run.lock.exists()
    logs = "".join(job.stdout() for job in jobs)
    assert logs.count(": training (2 epochs)") == 4  # each of the 4 runs started once, by one of the two workers
    assert comparable(shared.outdir, shared) == comparable(sequential.outdir, sequential)


@pytest.mark.slow
def test_submitit_launcher_runs_one_job_per_run_then_aggregates(tmp_path, synthetic_data, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    cfg = tiny_compare_config(tmp_path, models=["Conv2d", "DeformConv2d"], seeds=[0], robustness=False, dcn_backend="gather",
                              launcher="submitit-local", cluster={"time_min": 10, "cpus": 1, "mem_gb": 2})
    submit_all(cfg, run_job, [("Conv2d", 0), ("DeformConv2d", 0)])
    out = capsys.readouterr().out
    assert "[tiny] submitted 2 jobs" in out and out.count(") finished") == 2
    rows, _ = compare_mod.aggregate(cfg)
    assert [r["model"] for r in rows] == ["Conv2d", "DeformConv2d"] and all(r["epochs"] == 2 for r in rows)
    submit_all(cfg, run_job, [])
    assert "every run is trained and tested already" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, message", [
    ({"launcher": "pbs"}, '"launcher" must be one of "local", "slurm", "submitit-local", got "pbs"'),
    ({"launcher": "slurm"}, '"launcher": "slurm" needs "cluster", the resources of each job'),
    ({"launcher": "slurm", "cluster": {"time_min": 60, "cpus": 2}}, '"cluster" misses the field(s) mem_gb'),
    ({"launcher": "slurm", "cluster": {"time_min": 60, "cpus": 2, "mem_gb": 4}}, '"launcher": "slurm" needs "cluster": {"partition": ...}'),
    ({"launcher": "slurm", "cluster": {"time_min": 60, "cpus": 0, "mem_gb": 4, "partition": "p"}}, '"cluster" field "cpus" must be a whole number >= 1'),
    ({"cluster": {"time_min": 60, "cpus": 2, "mem_gb": 4, "queue": "q"}}, '"cluster" has unknown field(s) queue; its fields are partition'),
])
def test_cluster_settings_are_checked(tmp_path, overrides, message):
    with pytest.raises(UserError) as refused:
        parse_config({"protocol": "p", "outdir": str(tmp_path), **overrides}, CompareConfig)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_slurm_where_there_is_none_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    cfg = tiny_compare_config(tmp_path, launcher="slurm", cluster={"time_min": 60, "cpus": 2, "mem_gb": 4, "partition": "cpu"})
    with pytest.raises(UserError, match='"launcher": "slurm" cannot submit from this machine .*use "launcher": "local"'):
        submit_all(cfg, run_job, [("Conv2d", 0)])
    assert not (tmp_path / "cmp" / "Conv2d").exists()
