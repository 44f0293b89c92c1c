"""One process per job: ``<job_dir>/job.lock``.

The lock file is JSON naming its holder: ``host``, ``pid``, the process's start time
(``pid_start``, from ``/proc``: a pid the system has since given to another process does not
count as the holder), ``acquired_at`` and ``heartbeat_at``. The holder rewrites it every
``heartbeat_s`` seconds from a daemon thread and removes it when the job ends, however it
ends short of SIGKILL or a power cut.

A second process that finds the lock refuses the job (:class:`JobLocked`) unless the lock is
**stale**:

- held on this host by a process that no longer runs (gone, or its pid reused): stale at once;
- held on another host (a shared file system): stale once its heartbeat is older than
  ``stale_after_s``. A live holder refreshes it every ``heartbeat_s``, far more often; a host
  that crashed or lost the file system stops doing so.

Creating the lock is atomic (``O_CREAT | O_EXCL``). Taking over a stale one goes through a
second file, ``job.lock.break``, created the same way, so of two processes that find the
same stale lock only one replaces it; the other then sees a live lock and refuses.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("scaling.train")

LOCK_FILE = "job.lock"
BREAK_STALE_S = 60.0
"""A ``job.lock.break`` file older than this was left by a process that died mid-takeover
(it exists for milliseconds otherwise)."""


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``
    field 22), or None when it does not run or the system has no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
"""Where a data-parallel process learns its rank: Lightning's DDP starts its workers by
re-running the command with ``LOCAL_RANK``/``NODE_RANK`` set, torchrun sets ``RANK``, and
under SLURM (``hydra/launcher=slurm_ddp``: one task per GPU, Lightning starts no process)
each task is told ``SLURM_PROCID``."""


def is_secondary_rank() -> bool:
    """Whether this process is a data-parallel worker other than global rank 0 (see
    :data:`RANK_VARIABLES`). Rank 0 holds the job's lock for all of them; a worker that took
    it too would leave rank 0 waiting for it at the rendezvous."""
    return any(os.environ.get(var, "0") not in ("", "0") for var in RANK_VARIABLES)


class JobLocked(RuntimeError):
    """The job is held by a live process (or a takeover is under way)."""

    def __init__(self, path: Path, holder: dict[str, Any] | None, reason: str) -> None:
        self.path, self.holder, self.reason = path, holder or {}, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        h = self.holder
        who = f"host {h.get('host')} pid {h.get('pid')}" if h else "another process"
        since = f" since {h['acquired_at']}" if h.get("acquired_at") else ""
        return (f"{self.path} is held by {who}{since} ({self.reason}): another process is running this job. "
                f"If it is not, delete {self.path} and re-run")


@dataclass
class JobLock:
    """``with JobLock(job_dir / LOCK_FILE):`` holds the job or raises :class:`JobLocked`."""

    path: Path
    heartbeat_s: float = 60.0
    stale_after_s: float = 600.0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._held: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the holder's record

    def _identity(self) -> dict[str, Any]:
        now = _now()
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                "acquired_at": _iso(now), "heartbeat_at": _iso(now), "heartbeat_ts": now,
                "heartbeat_s": self.heartbeat_s}

    def read(self) -> dict[str, Any] | None:
        """The lock's holder record; None when there is no lock; ``{}`` when it cannot be
        parsed (a holder killed while creating it)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def stale_reason(self, holder: dict[str, Any] | None) -> str | None:
        """Why ``holder``'s lock is stale, or None when it is live (see the module docstring)."""
        if holder is None:
            return "no lock"
        if not holder:
            age = _now() - self._mtime()
            return f"unreadable lock, {age:.0f} s old" if age > self.stale_after_s else None
        if holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            if not isinstance(pid, int) or not pid_alive(pid):
                return f"process {pid} no longer runs"
            start = holder.get("pid_start")
            if start is not None and process_start(pid) not in (None, start):
                return f"pid {pid} now belongs to another process"
            return None
        beat = holder.get("heartbeat_ts")
        age = _now() - (float(beat) if isinstance(beat, (int, float)) else self._mtime())
        return f"heartbeat {age:.0f} s old (limit {self.stale_after_s:.0f} s)" if age > self.stale_after_s else None

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return _now()

    # ------------------------------------------------------------------ acquire / release

    def _create(self, record: dict[str, Any]) -> bool:
        """Create the lock file with ``record``; False when one exists."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def acquire(self) -> None:
        """Hold the job; raises :class:`JobLocked` when a live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = self._identity()
        if not self._create(record):
            holder = self.read()
            reason = self.stale_reason(holder)
            if reason is None:
                raise JobLocked(self.path, holder, "live")
            self._take_over(holder, reason, record)
        self._held = record
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="job-lock-heartbeat", daemon=True)
        self._thread.start()

    def _take_over(self, seen: dict[str, Any] | None, reason: str, record: dict[str, Any]) -> None:
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            try:
                age = _now() - breaker.stat().st_mtime
            except FileNotFoundError:
                age = 0.0
            if age > BREAK_STALE_S:
                with contextlib.suppress(FileNotFoundError):
                    breaker.unlink()
            raise JobLocked(self.path, seen, "another process is taking over its stale lock") from None
        os.close(fd)
        try:
            now_held = self.read()
            if now_held != seen:  # replaced since we looked: judge the new holder
                if now_held is not None and self.stale_reason(now_held) is None:
                    raise JobLocked(self.path, now_held, "live")
            log.warning("job lock %s: taking over a stale lock (%s): %s", self.path, reason, seen)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            if not self._create(record):
                raise JobLocked(self.path, self.read(), "taken by another process")
        finally:
            with contextlib.suppress(FileNotFoundError):
                breaker.unlink()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            held = self.read()
            if not held or held.get("pid") != os.getpid() or held.get("host") != socket.gethostname():
                log.error("job lock %s is no longer ours (now %s): another process judged it stale", self.path, held)
                return
            now = _now()
            beat = {**held, "heartbeat_at": _iso(now), "heartbeat_ts": now}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(beat), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("job lock %s: heartbeat not written: %s", self.path, exc)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._held is None:
            return
        held = self.read()
        if held and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._held = None

    def __enter__(self) -> "JobLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
