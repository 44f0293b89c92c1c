"""The model card (``README.md`` in the hub's format) and the limits it states.

Everything on the card is computed from the export manifest (``export.json``): metrics and
intervals from the job's ``results.json``, the limits from those metrics by a stated rule,
file sizes and tensor types from the files written, measurements from llama.cpp runs.
Nothing is typed by hand, so the card cannot drift from what was measured.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping, Sequence

import yaml

from scaling.complex_plus import COMPLEX_PLUS
from scaling.data.io import TIERS as TIER_ORDER
from scaling.metrics import metric_interval
from scaling.results import describe_categories
HEADLINE = (("json_exact", "JSONExact"), ("field_f1", "Field F1"), ("schema_compliance", "Schema compliance"))


def limits(metrics: Mapping[str, Any], threshold: float = 0.5, schema_ids: Sequence[str] = ()) -> dict:
    """Where the model fails, from its per-tier and per-schema metrics.

    - ``fails``: JSONExact's upper 95% bound is below ``threshold`` (wrong more often than
      right even at the optimistic end of the interval);
    - ``below``: JSONExact below ``threshold``, but the interval reaches it (too few
      examples to call);
    - ``invalid_outputs``: answers that are not schema-valid JSON (compliance < 1), counted;
    - ``not_measured``: schemas in ``schema_ids`` with no evaluated example.
    """
    out: dict[str, Any] = {"threshold": threshold, "rule": (
        f"fails: JSONExact upper 95% bound < {threshold:.0%}; below: JSONExact < {threshold:.0%} with "
        "an interval that reaches it")}
    for level in ("by_tier", "by_schema"):
        fails, below, invalid = [], [], []
        for key, m in (metrics.get(level) or {}).items():
            n = int(m.get("n") or 0)
            exact = float(m["json_exact"])
            upper = float((metric_interval(m, "json_exact") or (exact, exact))[1])
            entry = {"name": key, "n": n, "json_exact": round(exact, 4), "upper": round(upper, 4)}
            if m.get("tier"):
                entry["tier"] = m["tier"]
            if upper < threshold:
                fails.append(entry)
            elif exact < threshold:
                below.append(entry)
            compliance = float(m.get("schema_compliance", 1.0))
            if compliance < 1.0:
                invalid.append({"name": key, "n": n, "n_invalid": round((1 - compliance) * n)})
        sort = lambda e: (e["json_exact"], e["name"])  # noqa: E731
        out[level] = {"fails": sorted(fails, key=sort), "below": sorted(below, key=sort), "invalid_outputs": invalid}
    seen = set((metrics.get("by_schema") or {}))
    out["not_measured"] = sorted(s for s in schema_ids if s not in seen)
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(m: Mapping[str, Any], key: str) -> str:
    """``45.6 [38.0, 53.2]``: Wilson for a proportion, the recorded bootstrap for F1 (:func:`metric_interval`)."""
    lo, hi = metric_interval(m, key) or (None, None)
    if lo is None:
        return f"{_pct(m.get(key))}"
    return f"{_pct(m.get(key))} [{_pct(lo)}, {_pct(hi)}]"


def _f1(m: Mapping[str, Any]) -> str:
    lo, hi = metric_interval(m, "field_f1") or (None, None)
    v = m.get("field_f1")
    return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def model_index(manifest: Mapping[str, Any]) -> list[dict]:
    """The ``model-index`` block: one result per tier and overall, metrics in percent."""
    metrics = manifest["metrics"]
    data = manifest["data"]
    results = []
    for config, m in [("all", metrics["overall"])] + [(t, metrics["by_tier"][t]) for t in TIER_ORDER
                                                      if t in (metrics.get("by_tier") or {})]:
        results.append({
            "task": {"type": "text-generation", "name": "JSON extraction"},
            "dataset": {"name": f"{data['name']} {data['version']}", "type": data["name"], "config": config,
                        "split": data.get("eval_split", "test")},
            "metrics": [{"type": key, "name": f"{label} (%)" if key != "field_f1" else label,
                         "value": round(100 * m[key], 2) if key != "field_f1" else round(m[key], 4),
                         "verified": False} for key, label in HEADLINE],
        })
    return [{"name": manifest["name"], "results": results}]


def card_header(manifest: Mapping[str, Any]) -> dict:
    model = manifest["model"]
    header: dict[str, Any] = {"license": manifest["license"]}
    if model.get("base_model"):
        header["base_model"] = model["base_model"]
        header["base_model_relation"] = "finetune" if manifest["recipe"]["finetune"]["method"] != "none" else "quantized"
    header.update({
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": ["en"],
        "datasets": [f"{manifest['data']['name']}-{manifest['data']['version']}"],
        "tags": ["json-extraction", "structured-output", "gguf", "llama.cpp", manifest["params"]["category"].lower()],
        "model-index": model_index(manifest),
    })
    return header


def _tier_table(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["| tier | n | JSONExact % [95% CI] | Field F1 [95% CI] | Schema compliance % [95% CI] |",
             "|---|---:|---|---|---|"]
    rows = [(t, metrics["by_tier"][t]) for t in TIER_ORDER if t in (metrics.get("by_tier") or {})]
    for name, m in rows + [("**all**", metrics["overall"])]:
        lines.append(f"| {name} | {m['n']} | {_ci(m, 'json_exact')} | {_f1(m)} | {_ci(m, 'schema_compliance')} |")
    plus = metrics.get(COMPLEX_PLUS)
    if isinstance(plus, Mapping):
        lines.append(f"| complex+ | {plus['n']} | {_ci(plus, 'json_exact')} | {_f1(plus)} | "
                     f"{_ci(plus, 'schema_compliance')} |")
        lines += ["", _complex_plus_words(plus)]
    return lines


def _complex_plus_words(plus: Mapping[str, Any]) -> str:
    """What the complex+ row pools, from its recorded parts."""
    parts = plus.get("parts") or {}
    test, extra = parts.get("test") or {}, parts.get("extra") or {}
    return (f"complex+ (`scaling.complex_plus`): the complex tier on every complex test example there is, the "
            f"{test.get('n', '?')} complex examples of the test split above and the {extra.get('n', '?')} of "
            f"`{extra.get('file', '?')}` (same weights and decoder, never trained on); `all` stays the split "
            "comparable with published numbers.")


def _schema_table(metrics: Mapping[str, Any], tiers: Mapping[str, str]) -> list[str]:
    lines = ["| schema | tier | n | JSONExact % | Field F1 | compliance % |", "|---|---|---:|---:|---:|---:|"]
    order = sorted((metrics.get("by_schema") or {}).items(),
                   key=lambda kv: (TIER_ORDER.index(tiers[kv[0]]) if tiers.get(kv[0]) in TIER_ORDER else 9, kv[0]))
    for sid, m in order:
        lines.append(f"| {sid} | {tiers.get(sid, '?')} | {m['n']} | {_pct(m['json_exact'])} | {m['field_f1']:.3f} | "
                     f"{_pct(m['schema_compliance'])} |")
    return lines


def _limits_lines(lim: Mapping[str, Any]) -> list[str]:
    def names(entries, with_n=True):
        return ", ".join(f"{e['name']} ({_pct(e['json_exact'])}%, upper {_pct(e['upper'])}%, n={e['n']})" if with_n
                         else e["name"] for e in entries) or "none"

    lines = [f"Rule: {lim['rule']}.", ""]
    lines.append(f"- **Tiers it fails on:** {names(lim['by_tier']['fails'])}")
    if lim["by_tier"]["below"]:
        lines.append(f"- Tiers below {lim['threshold']:.0%}, interval reaching it: {names(lim['by_tier']['below'])}")
    lines.append(f"- **Schemas it fails on:** {names(lim['by_schema']['fails'])}")
    lines.append(f"- Schemas below {lim['threshold']:.0%}, too few examples to call: {names(lim['by_schema']['below'])}")
    invalid = lim["by_schema"]["invalid_outputs"]
    if invalid:
        lines.append("- Schemas with answers that are not schema-valid JSON: "
                     + ", ".join(f"{e['name']} ({e['n_invalid']} of {e['n']})" for e in invalid))
    if lim.get("not_measured"):
        lines.append(f"- Not measured (no test example): {', '.join(lim['not_measured'])}")
    return lines


def _gguf_lines(manifest: Mapping[str, Any]) -> list[str]:
    files = manifest.get("gguf") or {}
    if not files:
        reason = manifest.get("gguf_skipped") or "not requested"
        return [f"No GGUF files in this version ({reason})."]
    lines = ["| file | type | size | tensors by type | fell back from the scheme |", "|---|---|---:|---|---|"]
    for qtype, g in files.items():
        types = ", ".join(f"{k} {v}" for k, v in g["tensor_types"].items())
        changed = g.get("fallbacks") or {}
        fb = "; ".join(f"{len(v)} to {k}" for k, v in changed.items() if k not in ("F32",)) or "none"
        lines.append(f"| `{g['file']}` | {qtype.upper()} | {_mb(g['bytes'])} | {types} | {fb} |")
    notes = [g["note"] for g in files.values() if g.get("note")]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    conv = manifest.get("converter")
    if conv:
        lines += ["", f"Written by {conv}."]
    return lines


def _measured_lines(manifest: Mapping[str, Any]) -> list[str]:
    from scaling.deploy.llamacpp import measurement_table  # here: it loads torch; a card without measurements never needs it

    runs = manifest.get("measured") or {}
    if not runs:
        return ["Not measured in this export (`--measure`); see `python -m scaling.deploy`."]
    lines = measurement_table({q.upper(): run for q, run in runs.items()}, manifest["metrics"]["overall"],
                              split=manifest["data"].get("eval_split", "test"),
                              torch_dtype=(manifest.get("torch_eval") or {}).get("dtype"))
    plus = {q: run[COMPLEX_PLUS] for q, run in runs.items() if run.get(COMPLEX_PLUS)}
    if plus:
        lines += ["", *_measured_complex_plus_lines(plus, manifest["metrics"].get(COMPLEX_PLUS),
                                                     (manifest.get("torch_eval") or {}).get("dtype"))]
    return lines


def _measured_complex_plus_lines(plus: Mapping[str, Mapping[str, Any]], torch_block: Mapping[str, Any] | None,
                                 torch_dtype: str | None) -> list[str]:
    """complex+ through llama.cpp: each measured file's pooled answers beside the job's own complex+."""
    lines = ["complex+ through llama.cpp: the files' complex answers among the test examples above pooled with "
             "their answers to the extra complex examples, scored as the job's complex+ (*identical*: on the extra "
             "examples, against the job's answers there).", "",
             "| weights | n | JSONExact % [95% CI] | Field F1 | compliance % | identical (extra) | decode tokens/s "
             "(extra) | looped / capped (extra) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    if isinstance(torch_block, Mapping):
        lines.append(f"| PyTorch {torch_dtype or ''} (the job) | {torch_block['n']} | {_ci(torch_block, 'json_exact')} "
                     f"| {torch_block['field_f1']:.3f} | {_pct(torch_block['schema_compliance'])} | – | – | – |")
    for qtype, run in plus.items():
        m, s = run["metrics"], run["extra_stats"]
        ident = s.get("identical_to_reference") or {}
        share = f"{ident['n_identical']}/{ident['n_compared']}" if ident.get("n_compared") else "–"
        lines.append(f"| {qtype.upper()} | {m['n']} | {_ci(m, 'json_exact')} | {m['field_f1']:.3f} "
                     f"| {_pct(m['schema_compliance'])} | {share} | {s.get('decode_tokens_per_s')} "
                     f"| {s.get('looped')} / {s.get('capped')} |")
    return lines


_GROUNDED = (", grounded (string values and numbers kept to substrings of the prompt; the scaling decoder only: "
             "the llama.cpp files decode with the schema grammar alone)")


def _recipe_lines(manifest: Mapping[str, Any]) -> list[str]:
    r = manifest["recipe"]
    ft, prompt, decode, train = r["finetune"], r["prompt"], r["decode"], r.get("train") or {}
    optim = ft.get("optim") or {}
    lines = [
        f"- Fine-tuning: `{ft['method']}`, {ft.get('epochs')} epoch(s), {train.get('steps', '?')} optimiser steps, "
        f"batch {ft.get('batch_size')} (≤ {ft.get('max_batch_tokens')} tokens), lr {optim.get('lr')} "
        f"(warm-up {optim.get('warmup_ratio')}, floor {optim.get('min_lr_ratio')}), weight decay {optim.get('weight_decay')}, "
        f"max length {ft.get('max_length')}, tier repeats {ft.get('tier_repeat') or 'none'}; loss on answer tokens "
        "only, EOS appended and learned.",
        f"- Trained on {train.get('tokens', '?'):,} tokens ({train.get('target_tokens', '?'):,} answer tokens) in "
        f"{train.get('wall_s', '?')} s, {train.get('precision', '?')} on {train.get('device', '?')}."
        if isinstance(train.get("tokens"), int) else "- Training statistics: not recorded.",
        f"- Prompt: template `{prompt['template']}`, schema shown as `{prompt['schema']}`, compact JSON targets "
        f"`{prompt['compact_json']}`.",
        f"- Decoding: {decode['mode']}{' (strict grammar)' if decode.get('grammar_strict') and decode['mode'] == 'constrained' else ''}"
        f"{_GROUNDED if decode.get('grounded') else ''}, "
        f"greedy, at most {decode.get('max_new_tokens')} new tokens, stop at EOS or when the first JSON value closes; "
        f"`format` keywords {'enforced' if decode.get('grammar_formats') else 'not enforced'} by the grammar.",
    ]
    return lines


def _usage_lines(manifest: Mapping[str, Any]) -> list[str]:
    prompt = manifest["recipe"]["prompt"]
    name, version = manifest["name"], manifest["version"]
    f16 = (manifest.get("gguf") or {}).get("q8_0") or next(iter((manifest.get("gguf") or {}).values()), None)
    lines = ["The model was trained on this prompt (`scaling.data.prompts.format_prompt`"
             + (", plain text, no chat template" if prompt["template"] == "plain" else ", through the chat template")
             + "); ask it the same way:", "", "```text", manifest["prompt_example"].rstrip("\n"), "```", "",
             "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f'path = "outputs/models/{name}/v{version}"',
             "tok = AutoTokenizer.from_pretrained(path)",
             "model = AutoModelForCausalLM.from_pretrained(path)",
             "ids = tok(prompt, return_tensors=\"pt\", add_special_tokens=False).input_ids",
             "out = model.generate(ids, max_new_tokens=512, do_sample=False)  # stops at EOS (generation_config)",
             "print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))",
             "```"]
    if f16:
        lines += ["", "With llama.cpp, constrain the answer to the schema (the grammar the measurements used):", "",
                  "```python",
                  "from llama_cpp import Llama, LlamaGrammar",
                  "from scaling.deploy.gbnf import schema_to_gbnf",
                  f'llm = Llama("outputs/models/{name}/v{version}/{f16["file"]}", n_ctx=4096)',
                  "grammar = LlamaGrammar.from_string(schema_to_gbnf(schema, strict=True))",
                  "out = llm.create_completion(prompt, max_tokens=1024, temperature=0.0, grammar=grammar)",
                  "print(out[\"choices\"][0][\"text\"])  # ends at EOS: once the object closes the grammar allows nothing else",
                  "```"]
    return lines


def render_card(manifest: Mapping[str, Any]) -> str:
    """``README.md`` for an export version, from its manifest."""
    header = yaml.safe_dump(card_header(manifest), sort_keys=False, allow_unicode=True, width=1000)
    m = manifest
    params, model, data, source = m["params"], m["model"], m["data"], m["source"]
    metrics = m["metrics"]
    base = f"[{model['base_model']}](https://huggingface.co/{model['base_model']})" if model.get("base_model") else \
        f"a `{model['source']}` {model['family']} model"
    overall = metrics["overall"]
    lines = [
        "---", header.rstrip("\n"), "---", "",
        f"# {m['name']} v{m['version']}", "",
        (f"{base} fine-tuned to extract one JSON object under a given JSON Schema from text "
         if m["recipe"]["finetune"].get("method") != "none" else
         f"{base} as released (not fine-tuned), asked to extract one JSON object under a given JSON Schema from text ")
        + f"({data['name']} {data['version']}). {params['total']:,} parameters ({params['category']}). "
        f"On the {overall['n']} {data.get('eval_split', 'test')} examples: **JSONExact {_ci(overall, 'json_exact')}%**, "
        f"Field F1 {_f1(overall)}, schema compliance {_ci(overall, 'schema_compliance')}% (95% intervals: "
        "Wilson for JSONExact and compliance, bootstrap over examples for Field F1).",
        "",
        "## Results", "", f"PyTorch ({(m.get('torch_eval') or {}).get('dtype') or 'float32'}), "
        f"{m['recipe']['decode']['mode']} decoding, as the source job measured "
        f"(`{source['run_name']}`, config_hash `{source['config_hash']}`).", "",
        *_tier_table(metrics), "", "<details><summary>Per schema</summary>", "",
        *_schema_table(metrics, m.get("schema_tiers") or {}), "", "</details>", "",
        "## Limits", "", *_limits_lines(m["limits"]), "",
        "## Files", "",
        "- transformers: `config.json`, `generation_config.json` (EOS "
        f"`{m['eos']['token']}` = id {m['eos']['id']}, the token the model learned to end answers with), "
        "`model.safetensors` (fp32), tokenizer files with the base model's chat template; "
        f"`from_pretrained` gives the source weights' logits (max |difference| {m['checks']['logits_max_abs_diff']:.1e}).",
        "", *_gguf_lines(m), "",
        "## The deployed files, measured", "", *_measured_lines(m), "",
        "## How to use", "", *_usage_lines(m), "",
        "## Recipe", "", *_recipe_lines(m), "",
        "## Data", "",
        f"{data['name']} {data['version']}: {data.get('n_train')} training records, evaluated on "
        f"{data.get('n_eval', data.get('n_test'))} of {data.get('n_test')} test records. sha256 of every file read:", "",
        "| file | sha256 |", "|---|---|",
        *[f"| `{p}` | `{sha}` |" for p, sha in (data.get("files") or {}).items()], "",
        "## Parameters", "",
        f"- total {params['total']:,}; non-embedding {params['non_embedding']:,}; vocabulary {model.get('vocab_size')}",
        f"- training started from {model.get('base_weights') or model['source']}",
        *([f"- depth rung: {d['keep']} of {d['n_blocks']} blocks kept ({d['rule']}): {d['kept']}"]
          if (d := model.get("depth")) and d.get("kept") is not None else []),
        *([f"- grown rung: {g['n_blocks']} + {g['add']} blocks ({g['rule']}): copies of blocks {g['sources']} "
           f"inserted at {g['inserted']}, output projections zero at the start; trained: {g['train']}"]
          if (g := model.get("grow")) and g.get("inserted") is not None else []),
        f"- size category **{params['category']}** ({describe_categories()}), from the measured total", "",
        "## Reproduce", "", "```bash", *m["reproduce"], "```", "",
        "## Provenance", "",
        f"- version {m['version']}, exported {m['created_at']} (immutable: a change is a new version)",
        f"- source job `{source['job_dir']}`; config_hash `{source['config_hash']}`; train_hash "
        f"`{source.get('train_hash')}`",
        f"- weights sha256 `{source.get('weights_sha256')}`; results.json sha256 `{source['results_sha256']}`",
        f"- packages: {', '.join(f'{k} {v}' for k, v in (m.get('versions') or {}).items())}",
        "- every file's sha256: `SHA256SUMS` (`sha256sum -c SHA256SUMS`)",
        "",
    ]
    return "\n".join(lines)


def reproduce_commands(overrides: Sequence[str] | None, job_dir: str, name: str, version: str,
                       gguf: Sequence[str], measure: bool, measure_flags: Sequence[str] = (),
                       complex_plus: Mapping[str, Any] | None = None) -> list[str]:
    """Shell commands that retrain the source job and export it again; with ``complex_plus`` (the
    job's ``metrics.complex_plus``), the evaluation on its extra file and the pooling in between."""
    out = []
    if overrides:
        out.append("python -m scaling.train " + " ".join(shlex.quote(o) for o in overrides))
    else:
        out.append("# the job's overrides were not recorded (.hydra/overrides.yaml); its resolved config is in "
                   "results.json")
    extra = ((complex_plus or {}).get("parts") or {}).get("extra") or {}
    if extra.get("file"):
        extra_run = extra.get("job_dir") or extra.get("run") or "<the extra run>"
        out.append(f"python -m scaling.evaluate from_job={shlex.quote(job_dir)} "
                   f"data.test_file={shlex.quote(str(extra['file']))}   # -> {extra_run}")
        out.append(f"python -m scaling.complex_plus {shlex.quote(job_dir)} {shlex.quote(str(extra_run))}")
    flags = [f"--name {shlex.quote(name)}", f"--version {version}", f"--gguf {','.join(gguf) or 'none'}"]
    if measure:
        flags += ["--measure", *measure_flags]
    out.append(f"python -m scaling.export {shlex.quote(job_dir)} " + " ".join(flags))
    return out


__all__ = ["limits", "model_index", "card_header", "render_card", "reproduce_commands"]
