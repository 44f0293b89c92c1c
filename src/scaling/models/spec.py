"""What a model config (``conf/model/<key>.yaml``) says: :class:`ModelSpec`.

Its own module, without torch: the config tree's schema (:mod:`scaling.jobs.config`) is built
from it before Hydra composes, and ``--help`` / ``--cfg`` stay light. Building the model is
:mod:`scaling.models.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scaling.typed_config import dataclass_from_config, to_plain
from scaling.models.errors import ModelLoadError

SOURCES = ("hub", "gguf", "random", "local")
FAMILIES = ("llama", "minimodel")


@dataclass(frozen=True)
class ModelSpec:
    """What to build. Every field maps one-to-one to a key in ``conf/model/<key>.yaml``."""

    key: str
    """Short name used in sweeps, run names and figures (``smol135``)."""
    family: str = "llama"
    """Architecture family: ``llama`` (transformers' LlamaForCausalLM) or ``minimodel`` (our port)."""
    source: str = "hub"
    """Where the weights come from: hub, gguf, random or local (see :mod:`scaling.models.registry`)."""
    hub_id: str | None = None
    """Hugging Face repository id, e.g. ``HuggingFaceTB/SmolLM2-135M``."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); pin a commit for a published study."""
    path: str | None = None
    """Folder for ``source=local``."""
    gguf_package: str | None = None
    """Python package that ships the GGUF file (found with importlib, never imported)."""
    gguf_file: str | None = None
    """GGUF file name inside that package folder (or an absolute path)."""
    arch: dict = field(default_factory=dict)
    """Architecture hyper-parameters for ``source=random`` (a transformers config's fields)."""
    tokenizer: dict = field(default_factory=lambda: {"kind": "auto"})
    """Tokenizer: ``{kind: auto}`` (from the weights' source), ``{kind: gguf}`` (SmolLM2's
    tokenizer from the bundled GGUF, the same vocabulary as the hub model), ``{kind: hub,
    id: ...}``, ``{kind: path, path: ...}`` or ``{kind: bpe, vocab_size: N}`` (a byte-level BPE
    trained on the training split; keeps tiny models' embedding tables small)."""
    dtype: str = "float32"
    """Weights dtype at load time. fp32 for reference numerics (on CPU, bf16 matmul speed depends on
    the chip: see BENCHMARKS.md); on GPU
    keep fp32 master weights and let the trainer's ``bf16-mixed`` precision autocast."""
    trust_remote_code: bool = False
    """Off unless a config opts in: remote code runs arbitrary Python from the hub."""
    init_std: float = 0.02
    """Std of the random initialisation (``source=random``)."""
    depth: dict | None = None
    """Keep only some of the transformer blocks: ``{keep: 8}`` (blocks chosen by Block
    Influence on training records) or ``{keep: 2, rule: indices, indices: [0, 5]}``; null
    keeps every block. See :mod:`scaling.models.depth`."""
    grow: dict | None = None
    """Insert new blocks, function-preserving copies of chosen ones (LLaMA Pro): ``{add: 8}``
    (spread evenly), ``{rule: every_n, n: 2}``, ``{rule: indices, indices: [3, 7]}``, and
    ``train: new`` to fine-tune only the inserted blocks; null inserts none. See
    :mod:`scaling.models.grow`. Not combined with ``depth``."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ModelLoadError(f"model.source={self.source!r} for model {self.key!r}: expected one of {SOURCES}")
        if self.family not in FAMILIES:
            raise ModelLoadError(f"model.family={self.family!r} for model {self.key!r}: expected one of {FAMILIES}")
        # here: depth and grow import torch, the schema must not
        from scaling.models.depth import parse as parse_depth
        from scaling.models.grow import parse as parse_grow

        parse_depth(self.depth)
        parse_grow(self.grow)
        if self.depth is not None and self.grow is not None:
            raise ModelLoadError(f"model {self.key!r}: model.depth and model.grow are both set; a rung either keeps "
                                 "some of the pretrained blocks or adds new ones: set the other to null")

    @classmethod
    def from_config(cls, cfg: Any) -> "ModelSpec":
        """Build from a (Omega)dict; unknown keys are an error that names them."""
        data = {k: v for k, v in to_plain(cfg).items() if k != "_target_"}
        return dataclass_from_config(cls, data, "model", error=ModelLoadError)
