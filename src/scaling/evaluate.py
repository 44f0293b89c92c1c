"""``python -m scaling.evaluate``: the job entry point with ``finetune=none`` (conf/evaluate.yaml),
so a base-model evaluation writes the same ``results.json`` as a fine-tuned job.

    python -m scaling.evaluate model=smol135_gguf data=edgejson_v3

The evaluation itself (generate an answer per record, then score it) is
:func:`scaling.decode.evaluation.evaluate_records`, re-exported here.
"""

from __future__ import annotations

from scaling.decode.config import DecodeConfig, derive_max_new_tokens
from scaling.decode.evaluation import EvalResult, evaluate_records
from scaling.jobs.sweep import hydra_entry

__all__ = ["DecodeConfig", "EvalResult", "derive_max_new_tokens", "evaluate_records", "main"]


def main() -> None:
    hydra_entry("evaluate")


if __name__ == "__main__":
    main()
