"""Evaluate a GGUF file through llama.cpp the way the PyTorch evaluation runs: same prompts
(the same token ids), the record's schema as a grammar, greedy, the same stop rule, scored
by :func:`scaling.score.score_predictions`; and measure what a device would see.

:func:`evaluate_gguf` is the reusable part (the export's measurement and the speed
benchmark's CPU anchor both call it). Decoding runs in a separate process
(:mod:`scaling.deploy.worker`) that imports llama.cpp and no torch, so its peak resident
memory is the deployed file's. That process decodes one stream (batch 1, as an edge device
answers one request) and, token by token, asks this process whether to stop:

- the prompt is :func:`scaling.data.prompts.format_prompt` encoded by the job's own tokenizer
  as training and the PyTorch evaluation encode it (:func:`scaling.decode.engine.encode_prompts`:
  BOS where the tokenizer adds one); those ids are fed to llama.cpp, and whether llama.cpp's
  own tokenizer gives the same ids from the prompt text is counted (``tokenization_mismatches``);
- the stop rule is :class:`scaling.decode.RowStop` (EOS, the scorer's JSON extraction
  succeeds, a repeated block) and the caps are the job's: ``max_new_tokens`` and, with the
  job's ``prompt_cap_ratio``, each row's prompt-bounded cap (:func:`scaling.decode.row_caps`);
- the answer text is the job tokenizer's decoding of the generated ids.

Measured per file: tokens/s end to end (prefill included) and in decoding alone, time to
first token (prompt processing plus one step), peak resident memory of the llama.cpp
process, load time and file size; with ``reference`` (the PyTorch evaluation's outputs of
the same weights by example id), the share of answers identical to it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from scaling.cpu import cpu_record, has_amx
from scaling.data.prompts import PromptFormat, format_prompt
from scaling.data.sft import bos_prefix
from scaling.decode import DecodeConfig, RowStop, TokenText, row_caps
from scaling.decode.engine import encode_prompts
from scaling.deploy.gbnf import schema_to_gbnf, unmatched
from scaling.deploy.tools import DeployToolError, llama_cpp_version, require_llama_cpp
from scaling.metrics import metric_interval
from scaling.score import score_predictions


@dataclass(frozen=True)
class LlamaCppConfig:
    """How llama.cpp runs a file."""

    threads: int | None = None
    """CPU threads (prompt and generation); ``None``: every core of this machine."""
    n_batch: int = 512
    """Prompt tokens per llama.cpp decode call."""
    n_ctx: int | None = None
    """Context size; ``None``: the longest prompt + ``max_new_tokens`` + 1 (never truncates)."""
    check_tokenization: bool = True
    """Also tokenize each prompt with llama.cpp's tokenizer and count mismatching ids."""
    kv_f32: bool = False
    """Keep the KV cache in F32 (llama.cpp's default is F16): with an F32 file, llama.cpp then
    computes what PyTorch fp32 computes up to summation order (the exactness test uses it)."""
    extra_buffers: str = "auto"
    """llama.cpp's extra buffer types (weight repacking; on Intel CPUs with AMX, the AMX
    buffers): ``on``, ``off`` or ``auto`` = off on a CPU with AMX, on elsewhere. On AMX CPUs
    the repacked-weight path crashes at the first decode (segmentation fault; upstream
    llama.cpp issue 20824), so ``auto`` never takes it there. See :func:`use_extra_buffers`."""
    progress: bool = True


@dataclass
class GGUFEvaluation:
    """What :func:`evaluate_gguf` returns: per-example rows (as ``predictions.jsonl``), the
    :func:`scaling.metrics.aggregate` metrics, and the measured stats."""

    rows: list[dict]
    metrics: dict
    stats: dict = field(default_factory=dict)


EXTRA_BUFFERS = ("auto", "on", "off")


def use_extra_buffers(setting: str, flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether llama.cpp loads with its extra buffer types (``LlamaCppConfig.extra_buffers``).

    ``auto``: not on a CPU with AMX (``flags``: this CPU's, by default). There llama.cpp puts
    quantised weights into AMX buffers, and the first decode dies with a segmentation fault
    (seen here on Intel Xeon with AMX, llama-cpp-python 0.3.36; upstream issue 20824). Off,
    the same file runs on the ordinary CPU kernels. On other CPUs the extra buffers are
    llama.cpp's weight repacking for AVX2/AVX-512, kept."""
    if setting not in EXTRA_BUFFERS:
        raise ValueError(f"extra_buffers={setting!r}: expected one of {', '.join(EXTRA_BUFFERS)}")
    if setting == "auto":
        return not has_amx(flags)
    return setting == "on"


class LlamaCppWorker:
    """A :mod:`scaling.deploy.worker` process with one GGUF loaded."""

    def __init__(self, path: str | os.PathLike, n_ctx: int, threads: int, n_batch: int = 512,
                 kv_f32: bool = False, extra_buffers: bool | None = None) -> None:
        require_llama_cpp()
        self.path = str(path)
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        # The worker's writes share this file's offset: append mode keeps them at the end
        # while this process seeks back to read its log.
        fcntl.fcntl(self._stderr.fileno(), fcntl.F_SETFL, fcntl.fcntl(self._stderr.fileno(), fcntl.F_GETFL) | os.O_APPEND)
        env = dict(os.environ)
        # The worker imports `scaling.deploy.worker` from the same sources as this process.
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "scaling.deploy.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, encoding="utf-8",
                                     bufsize=1, env=env)
        if extra_buffers is None:
            extra_buffers = use_extra_buffers("auto")
        self.info = self._ask({"cmd": "load", "path": self.path, "n_ctx": n_ctx, "n_threads": threads,
                               "n_batch": n_batch, "kv_f32": kv_f32, "extra_buffers": bool(extra_buffers)})

    def _send(self, obj: Any) -> None:
        try:
            self.proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._fail("the llama.cpp process ended")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self._fail("the llama.cpp process ended")
        msg = json.loads(line)
        if "error" in msg:
            self._fail(msg["error"])
        return msg

    def _ask(self, obj: dict) -> dict:
        self._send(obj)
        return self._read()

    def _fail(self, message: str):
        self.proc.kill()
        code = self.proc.wait()
        if message == "the llama.cpp process ended" and code < 0:
            message += f" with signal {_signal_name(-code)}"
            if -code == signal.SIGSEGV and has_amx():
                message += (" on a CPU with AMX: if it was loaded with llama.cpp's extra buffers (extra_buffers=on), "
                            "that is the known crash of its AMX path (llama.cpp issue 20824); use extra_buffers=auto")
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].strip()
        raise DeployToolError(f"{self.path}: {message}" + (f"\n{tail}" if tail else ""))

    def check_grammar(self, grammar: str) -> str | None:
        """``None`` if llama.cpp parses ``grammar``, else the end of its log (the parse error)."""
        self._stderr.seek(0, os.SEEK_END)
        start = self._stderr.tell()
        if self._ask({"cmd": "check_grammar", "grammar": grammar})["ok"]:
            return None
        self._stderr.flush()
        self._stderr.seek(start)
        lines = [ln for ln in self._stderr.read().splitlines() if ln.strip()]
        self._stderr.seek(0, os.SEEK_END)
        return "llama.cpp could not parse the grammar" + (f": {lines[0][:300]}" if lines else "")

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return self._ask({"cmd": "tokenize", "text": text, "add_bos": add_bos})["ids"]

    def generate(self, ids: Sequence[int], stop: RowStop, max_new_tokens: int, grammar: str | None = None) -> dict:
        """Greedy tokens into ``stop`` until it says done (or ``max_new_tokens``); the worker's timings."""
        self._send({"cmd": "generate", "ids": list(ids), "grammar": grammar})
        while True:
            msg = self._read()
            if msg.get("done"):
                return msg
            done = stop.push(msg["token"]) or stop.n_generated >= max_new_tokens
            self._send("s" if done else "c")

    def peak_rss_mb(self) -> float:
        return self._ask({"cmd": "stats"})["peak_rss_mb"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "quit"})
                self.proc.wait(timeout=30)
            except (DeployToolError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> "LlamaCppWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quantiles(values: Sequence[float]) -> dict:
    if not values:
        return {"mean": None, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(ordered), 4), "median": round(statistics.median(ordered), 4),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4), "max": round(ordered[-1], 4)}


def compare_outputs(rows: Sequence[Mapping[str, Any]], reference: Mapping[str, str]) -> dict:
    """Share of ``rows`` whose ``output`` equals the reference output of the same id (overall
    and per tier), over the ids both have."""
    by_tier: dict[str, list[int]] = {}
    same = total = 0
    differ = []
    for row in rows:
        if row["id"] not in reference:
            continue
        equal = row["output"] == reference[row["id"]]
        total += 1
        same += equal
        by_tier.setdefault(row.get("tier") or "?", [0, 0])
        by_tier[row.get("tier") or "?"][0] += equal
        by_tier[row.get("tier") or "?"][1] += 1
        if not equal:
            differ.append(row["id"])
    return {"n_compared": total, "n_identical": same, "share": round(same / total, 4) if total else None,
            "by_tier": {t: {"n_identical": s, "n_compared": n} for t, (s, n) in by_tier.items()},
            "differing_ids": differ}


def evaluate_gguf(path: str | os.PathLike, records: Sequence, schemas: Mapping, prompt_format: PromptFormat,
                  tokenizer, decode: DecodeConfig, max_new_tokens: int, *, config: LlamaCppConfig = LlamaCppConfig(),
                  reference: Mapping[str, str] | None = None, cap_ratio: float | None = None,
                  desc: str = "llama.cpp") -> GGUFEvaluation:
    """Greedy-decode ``records`` with the GGUF at ``path`` and score the answers.

    ``tokenizer`` is the one the weights were trained with (a transformers tokenizer):
    it makes the prompt ids and decodes the answers, exactly as in the PyTorch evaluation.
    ``decode`` supplies the mode (``constrained``: the schema as a llama.cpp grammar,
    :mod:`scaling.deploy.gbnf`), the grammar settings and the stop rule; ``cap_ratio`` (the
    job's ``decode.prompt_cap_ratio``) the per-row caps, as in
    :func:`scaling.evaluate.evaluate_records`. ``decode.dtype`` and the batching settings do not
    apply: the file's own types decide the arithmetic, one stream at a time.
    """
    path = Path(path)
    if not path.is_file():
        raise DeployToolError(f"{path}: no such GGUF file")
    records = list(records)
    prompts = [format_prompt(r.prompt, schemas[r.schema_id].schema, prompt_format, tokenizer) for r in records]
    encoded = encode_prompts(tokenizer, prompts)
    caps = row_caps([len(e) for e in encoded], max_new_tokens, cap_ratio, decode)
    add_bos = bool(bos_prefix(tokenizer))

    grammars: dict[str, str | None] = {}
    failures: dict[str, str] = {}
    not_matched: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    if decode.mode == "constrained":
        for sid in sorted({r.schema_id for r in records}):
            schema = schemas[sid].schema
            try:
                grammars[sid] = schema_to_gbnf(schema, strict=decode.grammar_strict, formats=decode.grammar_formats,
                                               compact=decode.compact_separators and prompt_format.compact_json)
            except Exception as exc:  # noqa: BLE001 - the converter asserts on schemas it cannot write
                grammars[sid] = None
                failures[sid] = f"{type(exc).__name__}: {exc}"
            if unmatched(schema):
                not_matched[sid] = unmatched(schema)
    grammar_s = time.perf_counter() - t0

    threads = config.threads or os.cpu_count() or 1
    n_ctx = config.n_ctx or max(len(e) for e in encoded) + max_new_tokens + 1
    token_text = TokenText(tokenizer)
    eos = {tokenizer.eos_token_id}
    outputs: list[dict] = []
    timings: list[dict] = []
    mismatched: list[str] = []
    bar = tqdm(total=len(records), desc=desc, disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
    t_start = time.perf_counter()
    with LlamaCppWorker(path, n_ctx=n_ctx, threads=threads, n_batch=config.n_batch, kv_f32=config.kv_f32,
                        extra_buffers=use_extra_buffers(config.extra_buffers)) as worker:
        for sid, text in list(grammars.items()):
            if text is not None and (error := worker.check_grammar(text)) is not None:
                grammars[sid] = None  # decoded without a grammar, as PyTorch does when xgrammar fails
                failures[sid] = error
        for rec, prompt, ids, cap in zip(records, prompts, encoded, caps):
            if config.check_tokenization and worker.tokenize(prompt, add_bos) != list(ids):
                mismatched.append(rec.id)
            stop = RowStop(token_text, eos, decode.stop_at_json_end, decode.loop_min_tokens, decode.loop_max_period,
                           decode.loop_min_repeats, cap=cap)
            timing = worker.generate(ids, stop, cap, grammar=grammars.get(rec.schema_id))
            outputs.append({"id": rec.id, "output": tokenizer.decode(stop.ids, skip_special_tokens=True),
                            "n_tokens": stop.n_generated, "hit_eos": stop.hit_eos, "looped": stop.looped,
                            "capped": stop.capped, "cap": cap})
            timings.append(timing)
            bar.update(1)
        peak_rss = worker.peak_rss_mb()
        info = worker.info
    bar.close()
    wall = time.perf_counter() - t_start

    rows, metrics = score_predictions(outputs, records, schemas)
    for row, out, timing in zip(rows, outputs, timings):
        row.update(n_tokens=out["n_tokens"], hit_eos=out["hit_eos"], looped=out["looped"],
                   capped=out["capped"], cap=out["cap"], ttft_s=round(timing["ttft_s"] or 0.0, 4),
                   latency_s=round(timing["total_s"], 4), truncated=out["capped"] and row.get("status") != "ok")
    generated = sum(o["n_tokens"] for o in outputs)
    gen_s = sum(t["total_s"] for t in timings)
    ttfts = [t["ttft_s"] for t in timings if t["ttft_s"] is not None]
    decode_s = sum(t["total_s"] - (t["ttft_s"] or 0.0) for t in timings)
    decode_tokens = sum(max(0, o["n_tokens"] - 1) for o in outputs)
    prompt_tokens = sum(len(e) for e in encoded)
    stats = {
        "engine": "llama.cpp",
        "gguf": path.name,
        "file_bytes": path.stat().st_size,
        "n": len(records),
        "threads": threads,
        "n_ctx": n_ctx,
        "kv_cache": "f32" if config.kv_f32 else "f16",
        "load_s": info["load_s"],
        "wall_s": round(wall, 3),
        "generated_tokens": generated,
        "prompt_tokens": prompt_tokens,
        "tokens_per_s": round(generated / gen_s, 2) if gen_s > 0 else None,
        "decode_tokens_per_s": round(decode_tokens / decode_s, 2) if decode_s > 0 else None,
        "prefill_tokens_per_s": round(prompt_tokens / sum(ttfts), 2) if ttfts and sum(ttfts) > 0 else None,
        "ttft_s": _quantiles(ttfts),
        "latency_s": _quantiles([t["total_s"] for t in timings]),
        "peak_rss_mb": peak_rss,
        "rss_mb_python": info["rss_mb_python"],
        "rss_mb_before_load": info["rss_mb_before_load"],
        "gguf_eos": info["eos"],
        "max_new_tokens": max_new_tokens,
        "decode": {"mode": decode.mode, "grammar_strict": decode.grammar_strict,
                   "grammar_formats": decode.grammar_formats,
                   "compact": decode.compact_separators and prompt_format.compact_json,
                   "stop_at_json_end": decode.stop_at_json_end, "loop_min_tokens": decode.loop_min_tokens,
                   "loop_max_period": decode.loop_max_period, "loop_min_repeats": decode.loop_min_repeats,
                   "prompt_cap": decode.prompt_cap},
        "grammar_s": round(grammar_s, 3),
        "sampling": "greedy; the grammar checks the argmax first and filters the whole vocabulary only when it "
                    "rejects it (llama.cpp's common_sampler order)",
        "grammar_full_passes": sum(t.get("grammar_full_passes", 0) for t in timings),
        "grammar_failures": failures,
        "grammar_unmatched": not_matched,
        "tokenization_mismatches": mismatched,
        "looped": sum(o["looped"] for o in outputs),
        "capped": sum(o["capped"] for o in outputs),
        "prompt_cap_ratio": cap_ratio,
        "llama_cpp_version": _llama_cpp_version(),
        # Which CPU and which of its features llama.cpp used: speeds differ between machines.
        "cpu": cpu_record(),
        "llama_cpp_system_info": info.get("system_info"),
        "extra_buffers": info.get("extra_buffers"),
    }
    if reference is not None:
        stats["identical_to_reference"] = compare_outputs(rows, reference)
    return GGUFEvaluation(rows=rows, metrics=metrics, stats=stats)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(m: Mapping[str, Any], key: str) -> str:
    lo, hi = metric_interval(m, key) or (None, None)
    return _pct(m.get(key)) + ("" if lo is None else f" [{_pct(lo)}, {_pct(hi)}]")


def decode_words(d: Mapping[str, Any]) -> str:
    """How a run decoded, in words (for tables)."""
    if d.get("mode") != "constrained":
        return "no grammar"
    strict = "strict: declared keys only" if d.get("grammar_strict") else "extra keys where the schema allows"
    return f"the record's JSON Schema as a grammar ({strict}{', compact' if d.get('compact') else ''})"


def measurement_table(runs: Mapping[str, Mapping[str, Any]], torch_overall: Mapping[str, Any] | None = None,
                      split: str = "test", torch_dtype: str | None = None,
                      reference: str = "the PyTorch evaluation of the same weights") -> list[str]:
    """Markdown lines: one row per GGUF run (``{"stats", "metrics"}`` as :class:`GGUFEvaluation`
    holds them), beside the PyTorch evaluation's overall metrics when they cover the same examples."""
    first = next(iter(runs.values()))["stats"]
    n = first["n"]
    lines = [f"Greedy decoding through llama.cpp (llama-cpp-python {first.get('llama_cpp_version')}, "
             f"{first['threads']} thread{'s' if first['threads'] != 1 else ''}, one stream) on {n} {split} examples, {decode_words(first['decode'])}; "
             "scored by `scaling.score`. *identical*: answers equal, character for character, to "
             f"{reference}. Tokens/s counts prompt processing; decode tokens/s does not.", "",
             f"CPU: {cpu_words(first)}.", "",
             "| weights | JSONExact % [95% CI] | Field F1 | compliance % | identical | tokens/s | decode tokens/s "
             "| time to first token (median) | peak RSS | file |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if torch_overall is not None and torch_overall.get("n") == n:
        lines.append(f"| PyTorch {torch_dtype or ''} (the job) | {_ci(torch_overall, 'json_exact')} | {torch_overall['field_f1']:.3f} "
                     f"| {_pct(torch_overall['schema_compliance'])} | – | – | – | – | – | – |")
    for label, run in runs.items():
        s, m = run["stats"], run["metrics"]["overall"]
        ident = s.get("identical_to_reference") or {}
        share = f"{ident['n_identical']}/{ident['n_compared']}" if ident.get("n_compared") else "–"
        ttft = s["ttft_s"]["median"]
        lines.append(f"| {label} | {_ci(m, 'json_exact')} | {m['field_f1']:.3f} | {_pct(m['schema_compliance'])} "
                     f"| {share} | {s['tokens_per_s']} | {s['decode_tokens_per_s']} "
                     f"| {'–' if ttft is None else f'{ttft:.3f} s'} | {s['peak_rss_mb']:.0f} MB "
                     f"| {s['file_bytes'] / 2**20:.1f} MiB |")
    not_matched = first.get("grammar_unmatched") or {}
    if not_matched:
        lines += ["", f"Where llama.cpp's grammar differs from the PyTorch run's (xgrammar): it leaves numeric bounds "
                  f"unenforced in {len(not_matched)} of the schemas measured (`scaling.deploy.gbnf.unmatched`)."]
    mismatched = first.get("tokenization_mismatches")
    if mismatched:
        lines += ["", f"llama.cpp's own tokenizer gives other prompt ids than the training tokenizer on "
                  f"{len(mismatched)} of {n} prompts (the runs fed the training tokenizer's ids)."]
    return lines


def cpu_words(stats: Mapping[str, Any]) -> str:
    """The CPU a run measured on, in words, with the features llama.cpp used (speeds differ
    between machines: these numbers hold for this CPU)."""
    cpu = stats.get("cpu") or {}
    isa = ", ".join(cpu.get("isa") or []) or "flags unknown"
    extra = stats.get("extra_buffers")
    buffers = ("" if extra is None else
               "; llama.cpp's extra buffers (repacked weights) " + ("on" if extra else "off"))
    return f"{cpu.get('model') or 'not recorded'} ({cpu.get('cores') or '?'} cores; {isa}{buffers})"


def _llama_cpp_version() -> str | None:
    return llama_cpp_version()
