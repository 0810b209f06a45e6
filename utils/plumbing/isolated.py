"""Run one function in a fresh (spawned) process: its peak memory is then its own, and a crash or an
out-of-memory kill there is an error message here, not a dead or hanging benchmark."""
import multiprocessing as mp
import queue as queue_mod
import resource
from pathlib import Path


def peak_rss_mb():
    """This process's peak resident memory so far, MiB. From /proc (VmHWM): getrusage's ru_maxrss carries the
    parent's resident size across fork+exec, so in a spawned child it can start at the parent's, hiding a
    smaller peak of the child's own (measured: a 1 GB input showed as 0 MB growth)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere (Linux: KiB)


def _worker(fn, args, queue):
    try:
        queue.put(("ok", fn(*args)))
    except Exception as e:  # the caller reports it as one line
        queue.put(("error", f"{e.__class__.__name__}: {e}"))


def call_in_process(fn, *args):
    """(True, fn(*args)) or (False, "what went wrong"); fn must be importable (a module-level function)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(fn, args, queue))
    proc.start()
    while True:
        try:
            status, value = queue.get(timeout=5)
            break
        except queue_mod.Empty:  # still working, or dead without a word (killed for memory, say)
            if not proc.is_alive():
                status, value = "error", f"the measuring process died (exit code {proc.exitcode})"
                break
    proc.join()
    return status == "ok", value
