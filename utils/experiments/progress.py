"""Where a long comparison stands: runs and epochs done out of the total, elapsed time, estimated time left.

The estimate multiplies each run's remaining epochs by the measured median epoch time (training +
validation) of its variant at this worker's pace: the same machine and thread count, as the run records say
(a protocol moves between machines and thread counts, and one thread is markedly slower per epoch than two). A
variant not yet measured at this pace borrows its epochs at any pace, else the median of all epochs measured at
this pace (else anywhere), and the line says the estimate is rough. The median, not the mean: a protocol that
runs for a day shares its machine, and an epoch that spanned a pause (SIGSTOP) or a benchmark beside it would
drag a mean for the rest of the run.

Several workers can share a protocol (two compare.py processes, each with fewer threads), so the line re-reads
where every run stands from disk after each epoch: it counts the other workers' epochs too, and hands the runs left
to as many workers as hold a run now, each taking the next run when its own finishes (each measured its epochs at
its own pace).
"""
import heapq
import statistics
import time

from tqdm import tqdm


def duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def epoch_pace(by_pace, pace):
    """A variant's epoch times to estimate with, from {pace: times}: those measured at `pace`, else at any pace;
    and whether they were borrowed from another pace."""
    if by_pace.get(pace):
        return by_pace[pace], False
    return [t for times in by_pace.values() for t in times], True


def time_left(done, epoch_seconds, num_epoch, pace, held):
    """(seconds left, rough?) for the jobs in `done` ({job: epochs finished, in queue order}), from `epoch_seconds`
    ({variant: {pace: times}}) at `pace`, by as many workers as hold a job now (`held`, at least one), each training
    one run at a time; (None, True) before any epoch was measured. Rough when a variant borrows another pace's epochs
    or has none, and with several workers (each has its own pace, and which run a worker takes next is a race)."""
    paces = list(epoch_seconds.values())
    everywhere = [t for by_pace in paces for times in by_pace.values() for t in times]
    if not everywhere:
        return None, True
    fallback = statistics.median([t for by_pace in paces for t in by_pace.get(pace, [])] or everywhere)
    runs, rough = [], False  # seconds left of each unfinished run: those a worker holds first, then the queue's order
    for job, epochs in done.items():
        times, borrowed = epoch_pace(epoch_seconds.get(job[0], {}), pace)
        rough |= borrowed and epochs < num_epoch
        if epochs < num_epoch:
            runs.append((job not in held, (num_epoch - epochs) * (statistics.median(times) if times else fallback)))
    # A run is never split between workers: each takes the next run when it finishes its own, so the time left is
    # when the last worker finishes, not the sum of the work over the workers (one long run left takes its own time).
    free = [0.0] * max(1, len(held))
    for _, seconds in sorted(runs, key=lambda run: run[0]):
        heapq.heapreplace(free, free[0] + seconds)
    return max(free), rough or len(held) > 1


def eta_text(left, rough):
    """time_left's answer in words: '~' marks a rough estimate."""
    return "unknown until an epoch is measured" if left is None else ("~" if rough else "") + duration(left)


class ProtocolProgress:
    """`state()` says where the protocol stands now (compare.protocol_state reads it from disk): (done, epoch_seconds,
    held): `done` maps each (variant, seed) job to its finished epochs, `epoch_seconds` a variant to {pace: the
    measured times of its finished epochs at that pace}, `held` the jobs a worker holds now (one worker each).
    `pace` is this worker's (machine.in_words of its machine and threads)."""

    def __init__(self, protocol, num_epoch, state, pace=None):
        self.protocol, self.num_epoch, self.state, self.pace = protocol, num_epoch, state, pace
        self._read()
        self.start = time.perf_counter()
        total = len(self.done) * num_epoch
        # A bar only in a terminal (disable=None); a log file gets one line per epoch instead.
        self.bar = tqdm(total=total, initial=self.epochs_done(), desc=f"[{protocol}] protocol", unit="epoch", disable=None, dynamic_ncols=True)

    def _read(self):
        done, epoch_seconds, held = self.state()
        self.done, self.held = dict(done), list(held)
        self.epoch_seconds = {variant: {pace: list(times) for pace, times in by_pace.items()} for variant, by_pace in epoch_seconds.items()}

    def epochs_done(self):
        return sum(self.done.values())

    def runs_done(self):
        return sum(e >= self.num_epoch for e in self.done.values())

    def eta_seconds(self):
        """(seconds left, rough?): time_left at this worker's pace."""
        return time_left(self.done, self.epoch_seconds, self.num_epoch, self.pace, self.held)

    def line(self, variant, seed):
        eta = eta_text(*self.eta_seconds())
        if len(self.held) > 1:
            eta += f" ({len(self.held)} workers)"
        return (f"[{self.protocol}] {variant} seed {seed} epoch {self.done[(variant, seed)]}/{self.num_epoch} | "
                f"runs {self.runs_done()}/{len(self.done)}, epochs {self.epochs_done()}/{len(self.done) * self.num_epoch} | "
                f"elapsed {duration(time.perf_counter() - self.start)} | left {eta}")

    def epoch_finished(self, variant, seed):
        """Called by the training loop after every saved epoch: the state has it, and the other workers' epochs."""
        self._read()
        line = self.line(variant, seed)
        if self.bar.disable:
            print(line, flush=True)
        else:
            self.bar.update(self.epochs_done() - self.bar.n)
            self.bar.set_postfix_str(line.split(" | ", 1)[1])

    def close(self):
        self.bar.close()
