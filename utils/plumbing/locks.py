"""An exclusive lock per run, so that two workers (two compare.py processes, or cluster jobs of two
submissions) never train the same run at once.

The lock is a file created atomically (O_CREAT | O_EXCL: of two creators exactly one succeeds) holding
the holder's host, pid, start time and a random token. While held, a thread touches it every HEARTBEAT
seconds. A lock is stale when its holder is a process on this host that no longer exists, or a holder on
another host that has not touched it for STALE_AFTER seconds (a node that died, or a job that hangs). A stale lock is taken over under a
second atomic file (`<lock>.takeover`), after reading it again inside that: of two workers that both saw
the stale lock, one takes it and the other then finds a live holder. Plain files and rename, no flock:
they behave the same on the network file systems clusters share.
"""
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from utils.plumbing.files import write_json

HEARTBEAT = 30.0
STALE_AFTER = 600.0


class LockHeld(Exception):
    """Another live worker holds the lock; `holder` says who (host, pid, since)."""

    def __init__(self, path, holder):
        super().__init__(f"{path} is held by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}")
        self.holder = holder


def _read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # gone, or caught between creation and its first write: treated as held, checked again later


def _alive_here(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(path, holder, stale_after=STALE_AFTER):
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    if holder is None:  # unreadable: stale only once nobody has touched it for a long time
        return age > stale_after
    if holder.get("host") == socket.gethostname():  # this host: the process itself says (a paused one is not stale)
        return not _alive_here(holder.get("pid", -1))
    return age > stale_after


def is_held(path, stale_after=STALE_AFTER):
    """Whether a live worker holds the lock at `path` now (a lock file that is not stale)."""
    path = Path(path)
    return path.exists() and not is_stale(path, _read(path), stale_after)


def _create(path, holder):
    """Create the lock file with `holder` inside, atomically; False if it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(holder, f)
    return True


class RunLock:
    """`acquire()` ... `release()` holds the lock in between. `acquire(wait=False)` raises LockHeld when a live
    worker holds it; with wait=True it polls every `poll` seconds (printing who holds it, once) until the
    holder releases it or dies."""

    def __init__(self, path, stale_after=STALE_AFTER, heartbeat=HEARTBEAT):
        self.path, self.stale_after, self.heartbeat = Path(path), stale_after, heartbeat
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread = None

    def _try(self):
        if _create(self.path, self.holder):
            return True
        if not is_stale(self.path, _read(self.path), self.stale_after):
            return False
        takeover = self.path.with_name(self.path.name + ".takeover")
        if is_stale(takeover, _read(takeover), self.stale_after / 10):  # a taker that died mid-takeover
            with contextlib.suppress(FileNotFoundError):
                takeover.unlink()
        if not _create(takeover, self.holder):
            return False  # another worker is taking it over right now
        try:
            seen = _read(self.path)
            if not is_stale(self.path, seen, self.stale_after):
                return False  # someone took it over before us: live again
            write_json(self.path, self.holder)  # replaced atomically: readers see the old holder or us
            print(f"took over the stale lock {self.path} (was: {json.dumps(seen)})", flush=True)
            return True
        finally:
            takeover.unlink()

    def acquire(self, wait=False, poll=5.0):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while not self._try():
            holder = _read(self.path) or {}
            if not wait:
                raise LockHeld(self.path, holder)
            if not told:
                print(f"waiting: {LockHeld(self.path, holder)} (it is released when that worker finishes or dies)", flush=True)
                told = True
            time.sleep(poll)
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if (_read(self.path) or {}).get("token") == self.holder["token"]:  # never remove a lock another worker took over
            self.path.unlink()
