"""Evaluation of one split: generate an answer per record, then score it (:mod:`scaling.score`).

What it does differently from the published study's harness (one example at a time,
``generate(max_new_tokens=512)``, no stop before the cap):

- continuous batching over a preallocated KV cache, bf16 where the hardware has it;
- each sequence stops at EOS *or as soon as the scorer's extraction finds its JSON*, so a
  model that never learned EOS does not burn the cap;
- caps come from the data (complex targets exceed 2,000 tokens; a fixed 512 truncates them)
  and from each row's own prompt;
- optional schema-constrained decoding (xgrammar), each schema compiled once per run;
- wall time, generated tokens, tokens/s, steps and latency are measured, never estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling.data.prompts import PromptFormat, format_prompt, format_target
from scaling.decode.config import DecodeConfig, derive_max_new_tokens, row_caps
from scaling.decode.engine import encode_prompts, generate_batched
from scaling.decode.grammar import SchemaGrammars
from scaling.decode.grounded import VocabTrie, grounded_cursors
from scaling.score import score_predictions

__all__ = ["EvalResult", "evaluate_records"]


@dataclass
class EvalResult:
    rows: list[dict]
    metrics: dict
    stats: dict


def evaluate_records(model, tokenizer, records, schemas, fmt: PromptFormat, cfg: DecodeConfig,
                     max_new_tokens: int | None = None, desc: str = "eval",
                     cap_ratio: float | None = None) -> EvalResult:
    """Generate an answer for every record and score it (see ``scaling.metrics``).

    ``cap_ratio``: the largest answer / prompt token ratio of the training records
    (:func:`scaling.decode.answer_prompt_ratio`); with ``cfg.prompt_cap`` each row is also
    capped by its own prompt's length. ``None``: the run-wide cap only.
    """
    prompts = encode_prompts(tokenizer, [format_prompt(r.prompt, schemas[r.schema_id].schema, fmt, tokenizer)
                                         for r in records])
    if max_new_tokens is None:
        max_new_tokens = derive_max_new_tokens(tokenizer, [format_target(r.expected_output, fmt) for r in records], cfg)
    caps = row_caps([len(p) for p in prompts], max_new_tokens, cap_ratio, cfg)
    grammars = None
    compile_s = 0.0
    failures: dict = {}
    if cfg.mode == "constrained":
        vocab = model.get_output_embeddings().weight.shape[0]
        sg = SchemaGrammars(tokenizer, vocab_size=vocab, compact=cfg.compact_separators and fmt.compact_json,
                            formats=cfg.grammar_formats, strict=cfg.grammar_strict)
        grammars = [sg.get(r.schema_id, schemas[r.schema_id].schema) for r in records]
        compile_s, failures = sg.compile_s, dict(sg.failed)
    groundings = None
    if cfg.grounded:
        import xgrammar as xgr

        vocab = model.get_output_embeddings().weight.shape[0]
        info = sg.info if grammars is not None else xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab, stop_token_ids=[tokenizer.eos_token_id])
        # The extraction text itself, not the formatted model input: values are copied from it.
        groundings = grounded_cursors([r.prompt for r in records], VocabTrie.from_tokenizer_info(info, vocab))
    generations, stats = generate_batched(model, tokenizer, prompts, max_new_tokens, cfg, grammars, desc=desc,
                                          caps=caps, groundings=groundings)
    stats.grammar_compile_s, stats.grammar_failures = compile_s, failures
    # The stop flags go with the text: they name why an unparsed answer stopped (scaling.ceiling).
    predictions = [{"id": r.id, "output": g.text, "looped": g.looped, "capped": g.capped, "hit_eos": g.hit_eos}
                   for r, g in zip(records, generations)]
    rows, metrics = score_predictions(predictions, records, schemas)
    for row, g, cap in zip(rows, generations, caps):
        row["n_tokens"] = g.n_tokens
        row["hit_eos"] = g.hit_eos
        row["looped"] = g.looped
        row["capped"] = g.capped
        row["cap"] = cap
        row["truncated"] = g.capped and row.get("status") != "ok"
    return EvalResult(rows=rows, metrics=metrics, stats=stats.as_dict())
