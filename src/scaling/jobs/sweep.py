"""The Hydra side of a job: the task function, the entry points' ``main``, and a sweep's report.

``python -m scaling.train`` and ``python -m scaling.evaluate`` are :func:`hydra_entry` with
their config. One job that fails exits 1 with ``error: ...``. A multirun goes on past a
failed job; at its end :class:`SweepCallback` prints one line per job that failed, was held
by another process or died without a result, and the process exits 1 if there was any (0
when every job completed or was skipped). SIGTERM stops the sweep at once with status 143.

Jobs report to the sweep through small files (``<sweep_dir>/.outcomes/<invocation>/<num>.json``),
because with the joblib and submitit launchers they run in other processes. A job writes
``started`` when it begins and its status when it ends; one left at ``started`` died.

This module imports neither torch nor Lightning (the job itself is imported when a job
starts), so ``--help``, ``--cfg`` and the parent of a parallel sweep stay light.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

import scaling.jobs.config  # noqa: F401 - registers the configs' resolvers before Hydra composes
from scaling.jobs.config import schemas
from scaling.jobs.hydra_runtime import hydra_job_dir, is_multirun, job_num
from scaling.jobs.lock import is_secondary_rank
from scaling.jobs.from_job import evaluation_config
from scaling.paths import CONF_DIR

OUTCOMES_ENV = "SCALING_SWEEP_OUTCOMES"
"""Set by the sweep's parent process: the folder its jobs report to."""
OUTCOMES_DIR = ".outcomes"
FAILED_STATUSES = ("failed", "locked", "died")

_exit_status = 0  # set by SweepCallback.on_multirun_end, read by hydra_entry


def _report(status: str, cfg: DictConfig, job_dir: Path | None, message: str | None = None) -> None:
    folder = os.environ.get(OUTCOMES_ENV)
    if not folder or not is_multirun() or is_secondary_rank():  # rank 0 reports for a DDP job
        return
    outcome = {"status": status, "run_name": str(cfg.get("run_name")), "job_dir": str(job_dir) if job_dir else None,
               "message": message}
    path = Path(folder) / f"{job_num()}.json"
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(outcome), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # the sweep then reports the job as "died": better than failing the job over it


def _failure_message(record: dict, one_line: bool = True) -> str:
    """The error's type and message (``one_line``: its first line only), then where the rest is."""
    err = record.get("error") or {}
    text = str(err.get("message") or "").strip()
    first = text.splitlines()[0] if text and one_line else text
    if first != text:
        first += " ..."
    results = Path(str(record.get("job_dir"))) / "results.json"
    where = ""
    if record.get("results_kept"):
        where = f" ({results} left as it was: completed by an earlier run)"
    elif record.get("status") == "failed" and results.is_file():
        where = f" (see {results})"
    return f"{err.get('type')}: {first}{where}"


def check_keys(cfg: DictConfig) -> None:
    """Every key of ``cfg`` is one its schema knows. Hydra checks types and keys when it
    composes, but lets ``+key=value`` add a key to a typed node (``+finetune.epoch=3``, a
    misspelt ``epochs``): such a key would be ignored, so the job refuses to start, naming it."""
    from omegaconf import OmegaConf

    # A plain copy: a DictConfig keeps the node flags that let the key in.
    job = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    schema = schemas()["evaluate" if "from_job" in job else "train"]
    try:
        OmegaConf.merge(OmegaConf.structured(schema), job)
    except Exception as exc:  # noqa: BLE001 - OmegaConf's key errors carry the full key
        key = getattr(exc, "full_key", None)
        reason = str(exc).strip().splitlines()[0]
        print(f"error: {key}: {reason} (a misspelt key? `python -m scaling.train --cfg job` shows every key)"
              if key else f"error: {reason}", file=sys.stderr)
        sys.exit(2)


def _task_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra
        return []


def run_task(cfg: DictConfig) -> float | None:
    """Hydra's task function: run the job, report it; returns the overall JSONExact (what a
    Hydra sweeper would optimise), None without one."""
    job_dir = None
    try:
        job_dir = hydra_job_dir()
    except ValueError:
        pass  # not under Hydra (a test or a direct call): the outcome is reported without a folder
    check_keys(cfg)
    _report("started", cfg, job_dir)
    # Imported here: the job pulls in torch and Lightning, which --help and --cfg never need.
    from scaling.jobs.run import run_job
    try:
        if cfg.get("from_job"):
            groups = [p.name for p in CONF_DIR.iterdir() if p.is_dir()] + ["schema"]
            cfg = evaluation_config(cfg, _task_overrides(), groups)
        record = run_job(cfg)
    except Exception as exc:  # noqa: BLE001 - a job that cannot even start (bad lock config, unwritable folder)
        record = {"status": "failed", "run_name": str(cfg.get("run_name")), "job_dir": str(job_dir),
                  "error": {"type": type(exc).__name__, "message": str(exc)}}
    status = "skipped" if record.get("skipped") else str(record.get("status"))
    message = _failure_message(record) if status in FAILED_STATUSES else None
    _report(status, cfg, job_dir, message)
    if status in FAILED_STATUSES:
        if is_multirun():
            return None  # logged; the sweep goes on, and its exit status says a job failed
        print(f"error: job {cfg.run_name} {'not run' if status == 'locked' else 'failed'}: "
              f"{_failure_message(record, one_line=False)}", file=sys.stderr)
        sys.exit(1)
    if not record.get("metrics"):
        return None  # eval.split=none: nothing to optimise
    return float(record["metrics"]["overall"]["json_exact"])


def _check_writable(folder: str, what: str) -> None:
    """Create ``folder`` (Hydra would, with a traceback): a clear error and status 2 if it cannot be."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".write-test-{socket.gethostname()}-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        print(f"error: cannot write the {what} {folder}: {exc.strerror or exc}. Set output_root=<a writable folder> "
              "(or SCALING_OUTPUT_ROOT)", file=sys.stderr)
        sys.exit(2)


def _check_launcher(config: DictConfig) -> None:
    """Resolve the launcher's settings before Hydra does (it would print a traceback): a
    resolver's refusal (``hydra/launcher=slurm_ddp`` without a number of devices) is one
    ``error:`` line and status 2."""
    try:
        OmegaConf.to_container(config.hydra.launcher, resolve=True)
    except InterpolationResolutionError as exc:
        # OmegaConf's message: "<Error> raised while resolving interpolation: <message>\n full_key: ..."
        message = str(exc).split("\n", 1)[0].split("resolving interpolation: ", 1)[-1]
        print(f"error: {exc.full_key or 'hydra.launcher'}: {message}", file=sys.stderr)
        sys.exit(2)


class SweepCallback(Callback):
    """Checks the output folder before Hydra creates it, and reports a multirun's failed jobs
    at its end (``conf/hydra/default.yaml: callbacks``)."""

    def __init__(self) -> None:
        self.outcomes: Path | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(str(config.hydra.run.dir), "job folder")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_status
        _exit_status = 0
        if is_secondary_rank():  # a DDP worker re-running the command: rank 0 runs the sweep
            return
        _check_launcher(config)
        sweep_dir = str(config.hydra.sweep.dir)
        _check_writable(sweep_dir, "sweep folder")
        invocation = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self.outcomes = Path(sweep_dir) / OUTCOMES_DIR / invocation
        self.outcomes.mkdir(parents=True, exist_ok=True)
        os.environ[OUTCOMES_ENV] = str(self.outcomes)  # inherited by launcher processes

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_status
        if self.outcomes is None:
            return
        outcomes = {}
        for path in self.outcomes.glob("*.json"):
            try:
                outcomes[int(path.stem)] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                outcomes[int(path.stem)] = {"status": "died", "message": f"unreadable outcome {path}"}
        shutil.rmtree(self.outcomes, ignore_errors=True)
        try:
            self.outcomes.parent.rmdir()  # only when no other invocation reports there
        except OSError:
            pass  # another invocation still reports there, or it is gone already: both are fine
        os.environ.pop(OUTCOMES_ENV, None)
        self.outcomes = None
        _exit_status = 1 if report_sweep(outcomes, str(config.get("sweep_name"))) else 0


def report_sweep(outcomes: dict[int, dict], sweep_name: str) -> int:
    """Print the sweep's summary to stderr: a count per status, then one line per job that
    failed, was locked or died. Returns the number of such jobs."""
    counts: dict[str, int] = {}
    bad = []
    for num in sorted(outcomes):
        o = outcomes[num]
        status = o.get("status")
        if status == "started":
            status = "died"
            o = {**o, "message": "the job's process ended without a result (killed? out of memory?); see its log "
                                 f"in {o.get('job_dir')}"}
        counts[status] = counts.get(status, 0) + 1
        if status in FAILED_STATUSES:
            bad.append(f"  job {num} {o.get('run_name')} {status}: {o.get('message')}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"sweep {sweep_name}: {sum(counts.values())} jobs: {summary or 'none'}", file=sys.stderr)
    if bad:
        print(f"sweep {sweep_name}: {len(bad)} job(s) did not complete:", file=sys.stderr)
        print("\n".join(bad), file=sys.stderr)
    sys.stderr.flush()
    return len(bad)


def default_groups(config_name: str = "train") -> set[str]:
    """The config groups in ``conf/<config_name>.yaml``'s defaults list (``model``, ``debug``...)."""
    groups = set()
    for entry in OmegaConf.load(CONF_DIR / f"{config_name}.yaml").get("defaults") or []:
        if isinstance(entry, str):
            entry = {entry: None}
        for key in entry:
            key = str(key).split()[-1]  # "optional debug", "override finetune"
            if key != "_self_" and (CONF_DIR / key).is_dir():
                groups.add(key)
    return groups | (default_groups("train") if config_name != "train" else set())


def plain_group_overrides(args: list[str], groups: set[str]) -> list[str]:
    """``+debug=fast`` -> ``debug=fast`` for a group already in the defaults list, where
    Hydra would refuse it ("Multiple values for debug"); a note on stderr says so. Keys with
    a dot (``+model.path=...``: a new key) are left as they are."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.startswith("+") and not key.startswith("++") and key[1:] in groups:
            print(f"note: {arg} read as {key[1:]}={value}: the config group {key[1:]} is in the defaults list, so "
                  "it takes no '+'", file=sys.stderr)
            arg = f"{key[1:]}={value}"
        out.append(arg)
    return out


def hydra_entry(config_name: str) -> None:
    """``main`` of a job entry point over ``conf/<config_name>.yaml``."""
    sys.argv = [sys.argv[0], *plain_group_overrides(sys.argv[1:], default_groups(config_name))]
    hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(run_task)()
    if _exit_status:
        sys.exit(_exit_status)
