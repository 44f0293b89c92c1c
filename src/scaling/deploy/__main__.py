"""``python -m scaling.deploy``: evaluate GGUF files through llama.cpp, side by side with the
PyTorch evaluation of the same weights.

    python -m scaling.deploy outputs/models/<name>/v<version> [--gguf q8_0,...] [--limit N]
    python -m scaling.deploy JOB_DIR FILE.gguf [FILE.gguf ...] [--limit N]

The first form measures an export's GGUF files (tokenizer, data, prompt format and decoding
from its ``export.json``); the second any GGUF against a job folder (its tokenizer, data,
decoding and ``predictions.jsonl``), e.g. the bundled SmolLM2-135M Q4_1 file against a base-model
job. Writes ``<out>/<file stem>/results.json`` and ``predictions.jsonl`` per file and
``<out>/measurements.md`` (the table), and prints the table. Errors: ``error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from scaling.deploy.tools import DeployToolError
from scaling.export.ladder import MANIFEST
from scaling.export.source import ExportError, JobSource
from scaling.results import (
    RunFolder,
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_outputs,
    sha256_file,
    write_jsonl,
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m scaling.deploy", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="an export version folder (export.json) or a job folder (results.json)")
    ap.add_argument("files", nargs="*", type=Path, help="GGUF files (default: every GGUF of the export)")
    ap.add_argument("--gguf", help="with an export folder: which of its files, e.g. q8_0,q4_k_m")
    ap.add_argument("--limit", type=int, default=None, help="the first N evaluated examples only")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: every core)")
    ap.add_argument("--decode", choices=("greedy", "constrained"), default=None,
                    help="override the job's decoding mode")
    ap.add_argument("--data-root", help="the dataset root, if not where the job read it")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default outputs/deploy/<source name>)")
    ap.add_argument("--extra-buffers", choices=("auto", "on", "off"), default="auto",
                    help="llama.cpp's extra buffer types (weight repacking, AMX): auto = off on CPUs with AMX, "
                         "whose AMX path crashes (llama.cpp issue 20824), on elsewhere")
    ap.add_argument("--quiet", action="store_true")
    return ap


def _from_export(folder: Path, args) -> tuple:
    from transformers import AutoTokenizer

    manifest = read_json(folder / MANIFEST)
    cfg = manifest.get("job_config") or {}
    results = {"status": "completed", "config": cfg, "config_hash": manifest["source"]["config_hash"],
               "model": manifest["model"], "params": manifest["params"], "category": manifest["params"]["category"],
               "data": manifest["data"], "finetune": manifest["recipe"]["finetune"],
               "decode": manifest["recipe"]["decode"], "seed": cfg.get("seed", 0)}
    from omegaconf import OmegaConf

    source = JobSource(job_dir=Path(manifest["source"]["job_dir"]), results=results, config=OmegaConf.create(cfg))
    data = source.load_data(args.data_root)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    wanted = [q.strip().lower() for q in args.gguf.split(",")] if args.gguf else list(manifest.get("gguf") or {})
    missing = [q for q in wanted if q not in (manifest.get("gguf") or {})]
    if missing:
        raise ExportError(f"{folder}: no GGUF of type {', '.join(missing)} in this export "
                          f"(it has {', '.join(manifest.get('gguf') or {}) or 'none'})")
    files = [folder / manifest["gguf"][q]["file"] for q in wanted] + list(args.files)
    reference = None
    pred = RunFolder(source.job_dir).predictions_path
    if pred.is_file() and sha256_file(pred) == manifest["source"].get("predictions_sha256"):
        reference = read_outputs(pred, ExportError)
    name = f"{manifest['name']}-v{manifest['version']}"
    return source, data, tokenizer, files, reference, manifest["metrics"]["overall"], name


def _from_job(folder: Path, args) -> tuple:
    source = JobSource.load(folder)
    data = source.load_data(args.data_root)
    tokenizer = source.tokenizer(data)
    if not args.files:
        raise ExportError(f"{folder} is a job folder: name the GGUF files to evaluate")
    return (source, data, tokenizer, list(args.files), source.reference_outputs(),
            (source.results.get("metrics") or {}).get("overall"), source.results.get("run_name") or folder.name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    try:
        # here: it loads torch, which --help never needs
        from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf, measurement_table
        if (args.source / "export.json").is_file():
            source, data, tokenizer, files, reference, torch_overall, name = _from_export(args.source, args)
            torch_dtype = (read_json(args.source / "export.json").get("torch_eval") or {}).get("dtype")
            against = "the PyTorch evaluation of the same weights"
        else:
            source, data, tokenizer, files, reference, torch_overall, name = _from_job(args.source, args)
            torch_dtype = (source.results.get("eval") or {}).get("dtype")
            # Nothing ties a GGUF file to a job's weights: say what the comparison is against.
            against = (f"the answers in {args.source}/predictions.jsonl (the same weights only if the file "
                       "holds that job's model)")
        decode = replace(source.decode_config(), progress=not args.quiet)
        if args.decode:
            decode = replace(decode, mode=args.decode)
        if reference is not None and args.decode and args.decode != source.results["decode"].get("mode"):
            reference = None  # the job's answers were decoded another way: nothing to compare with
        fmt = source.data_spec(args.data_root).prompt_format
        records = source.evaluated_records(data) if reference is not None else \
            list(data.test)[: int(source.results["data"].get("n_eval") or len(data.test))]
        if args.limit:
            records = records[: args.limit]
        out = args.out or Path("outputs/deploy") / name
        runs = {}
        for path in files:
            res = evaluate_gguf(path, records, data.schemas, fmt, tokenizer, decode, source.max_new_tokens,
                                config=LlamaCppConfig(threads=args.threads, progress=not args.quiet,
                                                      extra_buffers=args.extra_buffers),
                                reference=reference, cap_ratio=source.cap_ratio, desc=f"llama.cpp {path.name}")
            folder = out / Path(path).stem
            write_jsonl(folder / "predictions.jsonl", res.rows)
            record = {"gguf": str(Path(path).resolve()), "gguf_sha256": sha256_file(path), "source": str(args.source),
                      "config_hash": source.results.get("config_hash"), "stats": res.stats, "metrics": res.metrics}
            atomic_write_json(folder / "results.json", record)
            runs[Path(path).name] = {"stats": res.stats, "metrics": res.metrics}
        same_n = torch_overall if torch_overall and torch_overall.get("n") == len(records) else None
        table = "\n".join(measurement_table(runs, same_n, torch_dtype=torch_dtype, reference=against)) + "\n"
        atomic_write_text(out / "measurements.md", f"# {name}: the deployed files measured\n\n{table}")
    except (ExportError, DeployToolError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    print(f"wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
