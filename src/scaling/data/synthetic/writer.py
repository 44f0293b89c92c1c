"""Writing a synthetic dataset: :func:`generate` draws every schema's records and writes the
EdgeJSON layout (``<version>/{train,test}.jsonl`` and ``schemas/<tier>/<schema_id>.json``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from .schemas import SCHEMAS

__all__ = ["DEFAULT_N_TEST", "DEFAULT_N_TRAIN", "generate"]

DEFAULT_N_TRAIN = 2000
"""Training records when no size is given: the CLI's default and ``conf/data/synthetic.yaml``'s
(``data.synth.n_train``; a test holds the two equal): about 167 per schema over the 12 schemas."""
DEFAULT_N_TEST = 240
"""Test records when no size is given (``data.synth.n_test``): enough per tier for a tier's
JSONExact to move in steps of 1.25 points (80 per tier)."""


def _shares(n: int, k: int) -> list[int]:
    """Split ``n`` into ``k`` counts differing by at most one, larger ones first."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def generate(out_dir: str | Path, seed: int = 0, n_train: int = DEFAULT_N_TRAIN,
             n_test: int = DEFAULT_N_TEST, version: str = "v1") -> Path:
    """Write a synthetic dataset in the EdgeJSON layout and return its root (``out_dir``).

    ``n_train`` and ``n_test`` records are each split evenly over the schemas in
    :data:`SCHEMAS` (hence over tiers); counts differ by at most one between schemas.
    Records are drawn per schema from ``random.Random(f"{seed}:{schema_id}")``, so adding a
    schema never changes another's records. A draw whose prompt or expected_output was already
    drawn is rejected, which makes train and test disjoint. Each split is then shuffled with
    ``random.Random(f"{seed}:{split}")``. Existing files at the written paths are replaced;
    nothing else under ``out_dir`` is touched.

    Raises ValueError for negative sizes or a version that is not a plain folder name.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    if not version or version in (".", "..") or "/" in version or "\\" in version:
        raise ValueError(f"version must be a plain folder name such as 'v1', got {version!r}")

    root = Path(out_dir)
    entries = list(SCHEMAS.values())
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    seen_prompts: set[str] = set()
    seen_outputs: set[str] = set()
    for entry, k_train, k_test in zip(entries, _shares(n_train, len(entries)),
                                      _shares(n_test, len(entries))):
        rng = random.Random(f"{seed}:{entry.schema_id}")
        for split, count in (("train", k_train), ("test", k_test)):
            for i in range(count):
                for _ in range(1000):
                    output, prompt = entry.sample(rng)
                    key = _dumps(output)
                    if prompt not in seen_prompts and key not in seen_outputs:
                        break
                else:  # only reachable if a schema's value space is nearly exhausted
                    raise ValueError(f"{entry.schema_id}: could not draw {count} distinct "
                                     f"{split} records; ask for fewer")
                seen_prompts.add(prompt)
                seen_outputs.add(key)
                splits[split].append({
                    "id": f"{entry.schema_id}_{split}_{i:05d}",
                    "schema_id": entry.schema_id,
                    "complexity": entry.tier,
                    "prompt": prompt,
                    "expected_output": output,
                })

    for entry in entries:
        path = root / "schemas" / entry.tier / f"{entry.schema_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entry.schema, indent=2) + "\n", encoding="utf-8",
                        newline="\n")
    (root / version).mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        random.Random(f"{seed}:{split}").shuffle(records)
        text = "".join(_dumps(record) + "\n" for record in records)
        (root / version / f"{split}.jsonl").write_text(text, encoding="utf-8", newline="\n")
    return root
