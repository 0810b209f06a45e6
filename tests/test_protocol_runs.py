"""A long protocol survives machine changes: finished runs are kept by small files, progress is reported."""
import json
import shutil

import pytest
import torch
from test_compare_and_offsets import tiny_compare_config

from utils.engine import train as train_mod
from utils.experiments.compare import compare
from utils.experiments.progress import ProtocolProgress, duration, time_left
from utils.plumbing.errors import UserError
from utils.plumbing.runs import ProtocolLayout, RunLayout, run_status

NAMES = ("Conv2d", "DeformConv2d", "DeformConv2dv2")


def forbid_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train_mod, "train_one_epoch", fail)


@pytest.mark.slow
def test_committed_files_alone_count_as_done(tmp_path, synthetic_data, monkeypatch, capsys):
    cfg = tiny_compare_config(tmp_path, seeds=[0])
    compare(cfg)
    first = json.loads((tmp_path / "cmp/comparison.json").read_text())["models"]
    layout = ProtocolLayout(cfg.outdir)
    for name in NAMES:
        run = layout.run(name, 0)
        record = json.loads(run.record.read_text())
        assert record["state"] == "trained" and record["epochs_done"] == 2 and record["num_epoch"] == 2
        assert record["settings"]["learning_rate"] == 0.01 and record["segments"][0]["epochs"] == [1, 2]
        assert record["segments"][0]["host"]["cpus"] >= 1 and record["segments"][0]["versions"]["torch"] == torch.__version__
        assert "code" in record["segments"][0]["versions"]  # the commit it ran (None outside a git checkout)
        weights = torch.load(run.weights, weights_only=True)
        assert "optimizer" not in weights and weights["epoch"] == 2
        shutil.rmtree(run.ckpt)  # what a fresh clone has: no last.pth, no full checkpoints
    # A fresh clone: only what a commit keeps.
    clone = tmp_path / "clone"
    for name in NAMES:
        run = layout.run(name, 0)
        for f in run.result_files():
            target = clone / "cmp" / f.relative_to(layout.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
    assert not list(clone.rglob("*ckpt*"))
    forbid_training(monkeypatch)
    capsys.readouterr()
    rows, _ = compare(tiny_compare_config(clone, seeds=[0]))
    out = capsys.readouterr().out
    assert out.count("trained already, skipping") == 3 and "testing" not in out
    assert [r["test_accuracy_mean"] for r in rows] == [m["test_accuracy_mean"] for m in first]


@pytest.mark.slow
def test_a_finished_run_without_final_files_is_finalised_not_retrained(tmp_path, synthetic_data, monkeypatch, capsys):
    """A run trained by an older version (no record, no weights.pth) or stopped between its last checkpoint
    and its final files: the final files are written from last.pth, no epoch is trained again."""
    cfg = tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d"])
    compare(cfg)
    run = ProtocolLayout(cfg.outdir).run("Conv2d", 0)
    weights_before = torch.load(run.weights, weights_only=True)["model"]
    run.record.unlink()
    run.weights.unlink()
    assert run_status(run, 2).state == "partial" and run_status(run, 2).epochs_done is None  # no record: last.pth knows
    forbid_training(monkeypatch)
    compare(cfg)
    assert run_status(run, 2).state == "done"
    record = json.loads(run.record.read_text())
    assert record["segments"][0]["note"] == "trained before runs kept a record" and len(record["segments"]) == 1
    weights_after = torch.load(run.weights, weights_only=True)["model"]
    assert all(torch.equal(weights_before[k], weights_after[k]) for k in weights_before)


@pytest.mark.slow
def test_a_finished_run_with_other_settings_is_refused(tmp_path, synthetic_data):
    compare(tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d"]))
    with pytest.raises(UserError, match="was trained with learning_rate 0.01, the config says 0.02; set another outdir"):
        compare(tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d"], learning_rate=0.02))


@pytest.mark.slow
def test_a_partial_run_resumes_and_reports_progress(tmp_path, synthetic_data, monkeypatch, capsys):
    real = train_mod.train_one_epoch
    calls = []

    def stop_in_epoch_2(model, optimizer, schedule, batches, epoch, num_epoch):
        calls.append(epoch)
        if epoch == 2 and len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, optimizer, schedule, batches, epoch, num_epoch)

    monkeypatch.setattr(train_mod, "train_one_epoch", stop_in_epoch_2)
    cfg = tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d", "DeformConv2dv2"])
    with pytest.raises(UserError, match="interrupted in epoch 2"):
        compare(cfg)
    run = ProtocolLayout(cfg.outdir).run("Conv2d", 0)
    assert run_status(run, 2).state == "partial" and run_status(run, 2).epochs_done == 1
    assert json.loads(run.record.read_text())["state"] == "partial"
    capsys.readouterr()
    compare(cfg)
    out = capsys.readouterr().out
    assert calls == [1, 2, 2, 1, 2]  # epoch 1 of the interrupted run is not trained again
    lines = [line for line in out.splitlines() if line.startswith("[tiny] ") and " | runs " in line]
    assert lines[0].startswith("[tiny] Conv2d seed 0 epoch 2/2 | runs 1/2, epochs 2/4 | elapsed ")
    assert lines[-1].startswith("[tiny] DeformConv2dv2 seed 0 epoch 2/2 | runs 2/2, epochs 4/4 |") and lines[-1].endswith("left 0m00s")
    assert "finished; its result files are" in out


def test_progress_estimate_uses_each_variants_epoch_time():
    done = {("A", 0): 10, ("B", 0): 4, ("A", 1): 0, ("B", 1): 0}
    progress = ProtocolProgress("p", 10, lambda: (done, {"A": {None: [60.0, 60.0]}, "B": {None: [120.0]}}, [("B", 0)]))
    assert progress.runs_done() == 1 and progress.epochs_done() == 14
    assert progress.eta_seconds() == (10 * 60 + 6 * 120 + 10 * 120, False)
    rough = ProtocolProgress("p", 2, lambda: ({("A", 0): 1, ("B", 0): 0}, {"A": {None: [30.0]}}, [("A", 0)]))
    assert rough.eta_seconds() == (1 * 30 + 2 * 30, True)  # B borrows A's time: marked rough
    assert ProtocolProgress("p", 2, lambda: ({("A", 0): 0}, {}, [])).eta_seconds() == (None, True)
    paused = ProtocolProgress("p", 4, lambda: ({("A", 0): 3}, {"A": {None: [60.0, 62.0, 6000.0]}}, [("A", 0)]))  # one epoch spanned a pause
    assert paused.eta_seconds() == (62.0, False)  # the median: the paused epoch does not drag the estimate
    assert "left ~1m30s" in rough.line("A", 0)
    assert duration(3 * 3600 + 5 * 60 + 20) == "3h05m" and duration(59) == "0m59s"
    for p in (progress, rough):
        p.close()


def test_progress_estimate_takes_the_epochs_timed_at_this_workers_pace():
    """A queue moved from two threads to two 1-thread workers: the estimate must take the epochs measured at one
    thread, not a median over both paces; a variant not yet measured at this pace borrows (rough)."""
    one, two = "cpu (2 CPUs, 1 torch threads)", "cpu (2 CPUs, 2 torch threads)"
    seconds = {"A": {two: [60.0] * 5, one: [100.0] * 2}, "B": {two: [80.0] * 3}}
    state = lambda: ({("A", 0): 7, ("B", 0): 3}, seconds, [("A", 0)])  # noqa: E731
    mine = ProtocolProgress("p", 10, state, pace=one)
    assert mine.eta_seconds() == (3 * 100.0 + 7 * 80.0, True)  # B: only 2-thread epochs so far, borrowed
    seconds["B"][one] = [110.0]
    assert mine.epoch_finished("A", 0) is None and mine.eta_seconds() == (3 * 100.0 + 7 * 110.0, False)
    assert ProtocolProgress("p", 10, state, pace=two).eta_seconds() == (3 * 60.0 + 7 * 80.0, False)
    elsewhere = ProtocolProgress("p", 10, lambda: ({("A", 0): 9, ("C", 0): 0}, seconds, [("A", 0)]), pace=one)
    assert elsewhere.eta_seconds() == (100.0 + 10 * 100.0, True)  # C: never measured: the median at this pace (80 s anywhere)
    for p in (mine, elsewhere):
        p.close()


def test_progress_with_several_workers_reads_the_disk_and_shares_the_work_left():
    disk = {"done": {("A", 0): 2, ("A", 1): 0}, "seconds": {"A": {None: [60.0, 60.0]}}, "held": [("A", 0)]}
    progress = ProtocolProgress("p", 4, lambda: (disk["done"], disk["seconds"], disk["held"]))
    assert progress.eta_seconds() == (6 * 60, False)
    # Meanwhile a second worker trained 3 epochs of A seed 1 (at 120 s: one thread each); both hold a run now.
    disk = {"done": {("A", 0): 3, ("A", 1): 3}, "seconds": {"A": {None: [60.0, 60.0, 60.0] + [120.0] * 3}}, "held": [("A", 0), ("A", 1)]}
    progress.epoch_finished("A", 0)
    assert progress.epochs_done() == 6 and progress.eta_seconds() == (2 * 90.0 / 2, True)
    assert progress.line("A", 0).endswith("left ~1m30s (2 workers)")
    progress.close()


def test_progress_with_several_workers_never_splits_a_run():
    """The end of a queue: one worker is on its last epoch, the other has just started a long run. The run left
    cannot be shared, so the time left is that run's own (30 x 400 s), not half the work left."""
    done = {("A", 4): 29, ("B", 4): 0}
    left = time_left(done, {"A": {None: [200.0]}, "B": {None: [400.0]}}, 30, None, [("A", 4), ("B", 4)])
    assert left == (30 * 400.0, True)
    # The two runs the workers hold go first, whatever the queue's order; the long run left starts when the first of
    # them finishes (A seed 1, 5 epochs left).
    done, seconds = {("A", 0): 20, ("B", 0): 0, ("A", 1): 25}, {"A": {None: [100.0]}, "B": {None: [300.0]}}
    assert time_left(done, seconds, 30, None, [("A", 0), ("A", 1)]) == (5 * 100.0 + 30 * 300.0, True)
    assert time_left(done, seconds, 30, None, [("A", 0)]) == ((10 + 5) * 100.0 + 30 * 300.0, False)  # one worker: the sum
    # A worker holds B at epoch 0 and nobody holds A seed 1 (stopped): B runs beside A seed 0, A seed 1 after it.
    assert time_left(done, seconds, 30, None, [("A", 0), ("B", 0)]) == (30 * 300.0, True)


def test_train_script_runs_write_a_record_too(tmp_path, synthetic_data):
    from conftest import make_train_config, run_script, write_config

    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))) == 0
    run = RunLayout(tmp_path / "run")
    assert run_status(run, 1).state == "done" and run.weights.exists()


@pytest.mark.slow
def test_model_seeds_queue_controls_before_the_next_seeds_and_pair_on_shared_seeds(tmp_path, synthetic_data, capsys):
    """The queue of the controls issue: controls on seeds 0-1 only, the main models on 0-2; a seed's runs all
    come before the next seed's, and each pair is tested on the seeds both variants have."""
    cfg = tiny_compare_config(tmp_path, models=["Conv2d", "Conv2d-dilated"], seeds=[0, 1, 2], model_seeds={"Conv2d-dilated": [0, 1]},
                              robustness=False)
    assert cfg.jobs() == [("Conv2d", 0), ("Conv2d-dilated", 0), ("Conv2d", 1), ("Conv2d-dilated", 1), ("Conv2d", 2)]
    rows, pairs = compare(cfg)
    started = [line for line in capsys.readouterr().out.splitlines() if line.endswith("(2 epochs)")]
    assert [line.split("]")[1].split(":")[0] for line in started] == [" run 1/5", " run 2/5", " run 3/5", " run 4/5", " run 5/5"]
    assert {r["model"]: r["seed_list"] for r in rows} == {"Conv2d": [0, 1, 2], "Conv2d-dilated": [0, 1]}
    assert pairs[0]["paired_seeds"] == 2
    assert not ProtocolLayout(cfg.outdir).run("Conv2d-dilated", 2).root.exists()
    assert ProtocolLayout(cfg.outdir).file("comparison_controls.png").exists()  # a control: its figure against Conv2d


@pytest.mark.parametrize("model_seeds, message", [
    ({"Conv2d-params": [0]}, 'names Conv2d-params, which "models" does not list'),
    ({"Conv2d": [0, 0]}, "distinct whole numbers"),
    ({"Conv2dd": [0]}, 'did you mean "Conv2d"'),
    ([0, 1], "must be an object of variant -> seed list"),
])
def test_model_seeds_are_checked(tmp_path, model_seeds, message):
    with pytest.raises(UserError, match=message):
        tiny_compare_config(tmp_path, models=["Conv2d"], model_seeds=model_seeds)


def test_keep_watch_commits_checkpoints_once_per_interval_and_survives_a_busy_git(monkeypatch):
    """--watch --checkpoints-every: finished runs every round, checkpoints in progress only once the interval has
    passed since the start or the last checkpoints; a failing git round is retried, not fatal."""
    from utils.experiments import keep as keep_mod

    now, calls = [0.0], []

    def fake_keep(cfg, checkpoints):
        calls.append((now[0], cfg, checkpoints))
        if now[0] == 600 and cfg == "b":
            raise UserError("git commit failed: index.lock exists")

    def fake_sleep(seconds):
        now[0] += seconds
        if now[0] > 3600:
            raise StopIteration

    monkeypatch.setattr(keep_mod, "keep", fake_keep)
    with pytest.raises(StopIteration):
        keep_mod.watch(["a", "b"], 300, checkpoint_minutes=20, clock=lambda: now[0], sleep=fake_sleep)
    assert [t for t, cfg, checkpoints in calls if checkpoints and cfg == "a"] == [1200, 2400, 3600]
    assert [t for t, cfg, _ in calls if cfg == "b"] == [300 * i for i in range(13)]  # 600's failure did not stop it
    calls.clear()
    now[0] = 0.0
    with pytest.raises(StopIteration):
        keep_mod.watch(["a"], 300, clock=lambda: now[0], sleep=fake_sleep)
    assert calls and not any(checkpoints for *_, checkpoints in calls)  # without an interval: never


@pytest.mark.slow
def test_keep_commits_finished_runs_and_the_checkpoint_in_progress(tmp_path, synthetic_data, monkeypatch):
    """keep.py: a finished run's small files (and never its checkpoints), a partial run's last.pth; once that run
    finishes, its checkpoint leaves the index. Only those paths are committed: other staged work stays staged."""
    from utils.experiments import keep as keep_mod
    from utils.experiments.compare import train_config_for
    from utils.experiments.keep import git, keep

    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (repo / ".gitignore").write_text("cmp/\n")  # run folders are ignored, as in the project
    (repo / "other.txt").write_text("staged work\n")
    git("add", ".gitignore", "other.txt")
    cfg = tiny_compare_config(repo, models=["Conv2d", "Conv2d-dilated"], seeds=[0], robustness=False)
    compare(tiny_compare_config(repo, models=["Conv2d"], seeds=[0], robustness=False))

    one_epoch = train_mod.train_one_epoch

    def ctrl_c_in_epoch_2(model, optimizer, schedule, batches, epoch, num_epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return one_epoch(model, optimizer, schedule, batches, epoch, num_epoch)

    monkeypatch.setattr(train_mod, "train_one_epoch", ctrl_c_in_epoch_2)
    with pytest.raises(UserError, match="interrupted in epoch 2"):
        train_mod.train(train_config_for(cfg, "Conv2d-dilated", 0))
    monkeypatch.setattr(train_mod, "train_one_epoch", one_epoch)
    keep(cfg, checkpoints=True)
    files = set(git("ls-tree", "-r", "--name-only", "HEAD").stdout.split())
    done, partial = ProtocolLayout(cfg.outdir).run("Conv2d", 0), ProtocolLayout(cfg.outdir).run("Conv2d-dilated", 0)
    assert {str(f.relative_to(repo)) for f in done.result_files()} <= files
    assert str(partial.last.relative_to(repo)) in files and str(partial.record.relative_to(repo)) in files
    assert not any("Conv2d/seed_0/train/ckpt" in f for f in files) and "other.txt" not in files
    assert "other.txt" in git("diff", "--cached", "--name-only").stdout  # still staged, not committed
    log = git("log", "--format=%s").stdout.splitlines()
    assert len(log) == 3 and "Conv2d seed 0 finished" in log[2] and "Conv2d-dilated seed 0 at epoch 1/2" in log[1]
    assert "report aggregated again over the 1 run finished so far (after Conv2d seed 0)" in log[0]
    report = ProtocolLayout(cfg.outdir).file("comparison.json")

    def committed_runs():
        return [r["model"] for r in json.loads(git("show", f"HEAD:{report.relative_to(repo)}").stdout)["runs"]]

    assert committed_runs() == ["Conv2d"]

    keep(cfg, checkpoints=True)  # nothing new: no commit
    assert len(git("log", "--format=%s").stdout.splitlines()) == 3
    compare(cfg)  # resumes and finishes Conv2d-dilated

    def report_commit_fails(*args):
        raise UserError("git commit failed: index.lock exists")

    with monkeypatch.context() as m:  # the run's commit lands, the report's does not ...
        m.setattr(keep_mod, "commit_report", report_commit_fails)
        with pytest.raises(UserError):
            keep(cfg, checkpoints=False)
    files = set(git("ls-tree", "-r", "--name-only", "HEAD").stdout.split())
    assert str(partial.last.relative_to(repo)) not in files and str(partial.weights.relative_to(repo)) in files
    assert partial.last.exists()  # dropped from git only
    assert committed_runs() == ["Conv2d"]
    keep(cfg, checkpoints=False)  # ... so the next round, with no run newly finished, still brings the report up to date
    assert committed_runs() == ["Conv2d", "Conv2d-dilated"]
    assert git("log", "-1", "--format=%s").stdout.strip().endswith("over the 2 runs finished so far")

    # A committed run whose analysis alone is redone is said to be analysed; one whose test files change, tested again.
    done.receptive_field_json.write_text(done.receptive_field_json.read_text() + "\n")
    keep(cfg, checkpoints=False)
    assert "Conv2d seed 0 analysed (effective receptive field, offsets)" in git("log", "-1", "--format=%s").stdout
    done.metrics.write_text(done.metrics.read_text() + "\n")
    keep(cfg, checkpoints=False)
    assert "Conv2d seed 0 tested again (test accuracy" in git("log", "-1", "--format=%s").stdout
