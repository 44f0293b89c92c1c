"""Synthetic EdgeJSON-format datasets that tiny from-scratch models can learn.

``generate(out_dir, seed, n_train, n_test, version)`` writes exactly the EdgeJSON layout::

    <out_dir>/<version>/train.jsonl
    <out_dir>/<version>/test.jsonl
    <out_dir>/schemas/<tier>/<schema_id>.json        (JSON Schema draft-07)

Each JSONL line is ``{"id", "schema_id", "complexity", "prompt", "expected_output"}`` where
``complexity`` is the tier (the schema's folder name).

Design, so that a 1M-parameter model trained for minutes on a CPU learns something real:

* Every value of ``expected_output`` is copied verbatim from the prompt, except the *derived*
  fields listed per schema (``SynthSchema.derived``), which are exact arithmetic over copied
  values (sums, products, means). Numbers appear in the prompt formatted exactly as
  ``json.dumps`` writes them (``4.5``, not ``4.50``).
* Values come from small vocabularies: names from short lists, small integers, prices with at
  most two decimals (generated in integer cents, so derived money fields are exact),
  ids such as ``"A1234"``.
* Tiers are real: *simple* schemas are flat records; *medium* schemas hold one array of
  objects plus totals; *complex* schemas nest arrays inside arrays with per-group and overall
  aggregates.
* Each record's prompt layout (``Key: value`` lines, sentences, or a pipe table) is drawn by
  the seeded RNG, so the model must read content, not positions.

Derived money fields round half-up to 2 decimals: ``total == round_half_up(sum, 2)``.
All schema ids start with ``syn_`` so their derived-field checks
(:mod:`scaling.data.derived_synthetic`, which :mod:`scaling.data.derived` registers whatever
is imported first) can never apply to EdgeJSON's own schemas.

The same seed (and sizes) gives byte-identical files. Train and test are disjoint: no prompt
and no expected_output occurs twice in the whole dataset.

The package, by idea: :mod:`.build` (schema builders, value formatting, cent arithmetic, word
lists), :mod:`.schemas` (the twelve schemas and :data:`SCHEMAS`), :mod:`.writer`
(:func:`generate`), :mod:`.cli` (``synth``; ``python -m scaling.data.synthetic``).
"""

from .cli import add_synth_subparser, main, run_synth
from .schemas import SCHEMAS, SynthSchema
from .writer import DEFAULT_N_TEST, DEFAULT_N_TRAIN, generate

__all__ = [
    "SCHEMAS",
    "SynthSchema",
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "add_synth_subparser",
    "generate",
    "main",
    "run_synth",
]
