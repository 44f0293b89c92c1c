"""Measured dense matmul rate (GFLOP/s) of this CPU, fp32 and bf16, for square sizes.

The number every other CPU figure in BENCHMARKS.md is judged against: a training step's
achieved GFLOP/s means little without the machine's own ``torch.matmul`` ceiling, measured
in the same conditions (same thread count, same background load).

    nice -n 10 .venv/bin/python bench/matmul_rate.py --sizes 1024 2048 --threads 2 --out /tmp/matmul.json

A matmul of two n x n matrices is counted as 2 n^3 FLOPs. Each (dtype, size) is timed
``--repeats`` times after one warm-up call and the median is reported; a dtype that is
slow on this CPU (bf16 without AMX/AVX512-BF16) stops repeating once ``--budget-s``
seconds are spent on one size, so a run never stalls for minutes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def machine_info(threads: int | None = None) -> dict:
    """Where and when a number was measured: shared by every script in bench/."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    import transformers

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "mem_gib": mem_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "nice": os.nice(0),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def emit_result(result: dict, out: Path | None) -> None:
    """Every bench script's ending: one JSON line on stdout, and the same indented in ``out``."""
    print(json.dumps(result))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


def available_mb() -> float | None:
    """MemAvailable from /proc/meminfo in MiB (None where there is no /proc)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def start_memory_guard(min_available_mb: float, interval_s: float = 0.5) -> None:
    """Exit this process (status 3) when the machine's available memory falls below
    ``min_available_mb``, and make it the kernel OOM killer's first choice: on a shared box
    a benchmark should die before a long training run does. 0 disables the guard."""
    if min_available_mb <= 0 or available_mb() is None:
        return
    try:  # raising one's own oom_score_adj needs no privilege
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass
    import sys
    import threading

    def watch() -> None:
        while True:
            avail = available_mb()
            if avail is not None and avail < min_available_mb:
                print(f"memory guard: MemAvailable {avail:.0f} MiB < {min_available_mb:.0f} MiB; exiting",
                      file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(interval_s)

    threading.Thread(target=watch, name="memory-guard", daemon=True).start()


def measure_matmul(n: int, dtype: torch.dtype, repeats: int = 5, budget_s: float = 20.0, seed: int = 0) -> dict:
    """Median GFLOP/s of ``a @ b`` for n x n matrices of ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    flops = 2.0 * n**3
    t0 = time.perf_counter()
    torch.matmul(a, b)  # warm-up: allocator, kernel selection, caches
    warm = time.perf_counter() - t0
    times: list[float] = []
    cpu_times: list[float] = []
    spent = warm
    for _ in range(repeats):
        if times and spent > budget_s:
            break
        c0, t0 = time.process_time(), time.perf_counter()
        torch.matmul(a, b)
        dt = time.perf_counter() - t0
        cpu_times.append(time.process_time() - c0)
        times.append(dt)
        spent += dt
    med = statistics.median(times)
    cpu_med = statistics.median(cpu_times)
    return {
        "n": n,
        "dtype": str(dtype).replace("torch.", ""),
        "repeats": len(times),
        "median_s": round(med, 6),
        "min_s": round(min(times), 6),
        "gflops_median": round(flops / med / 1e9, 2),
        "gflops_best": round(flops / min(times) / 1e9, 2),
        # per second of this process's CPU time (all threads): steadier under background load
        "median_cpu_s": round(cpu_med, 6),
        "gflops_per_cpu_s": round(flops / cpu_med / 1e9, 2) if cpu_med > 0 else None,
        "cpu_share": round(sum(cpu_times) / sum(times), 2),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="square matrix sizes")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--budget-s", type=float, default=20.0, help="stop repeating one size after this many seconds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    rows = []
    for name in args.dtypes:
        for n in args.sizes:
            row = measure_matmul(n, DTYPES[name], args.repeats, args.budget_s, args.seed)
            rows.append(row)
            print(f"{row['dtype']:>9} n={n:5d}  median {row['gflops_median']:8.2f} GFLOP/s  "
                  f"best {row['gflops_best']:8.2f}  per CPU-s {row['gflops_per_cpu_s']}  "
                  f"CPU share {row['cpu_share']}  ({row['repeats']} repeats)", flush=True)
    fp32 = [r["gflops_median"] for r in rows if r["dtype"] == "float32"]
    bf16 = [r["gflops_median"] for r in rows if r["dtype"] == "bfloat16"]
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "benchmark": "matmul_rate",
        "machine": info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": rows,
        "fp32_gflops_peak_median": max(fp32) if fp32 else None,
        "bf16_gflops_peak_median": max(bf16) if bf16 else None,
    }
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
