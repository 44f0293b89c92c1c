"""llama.cpp's own tools, from the pinned ``llama-cpp-python`` release: the HF -> GGUF converter,
quantisation, and reading what a GGUF file holds.

How the tools enter a machine (see README, "Export and deployment"):

- The library (``import llama_cpp``: inference, ``llama_model_quantize``) is the ``deploy`` extra,
  pinned to :data:`LLAMA_CPP_VERSION`; ``make install`` installs it. PyPI has no binary
  wheel for this platform, so pip builds it from source once (cmake and a C++ compiler; about
  10 minutes on 2 cores) and keeps the built wheel in its cache (``~/.cache/pip``).
- The converter (``convert_hf_to_gguf.py`` with its ``conversion/`` package and the ``gguf-py``
  it was written against) is not in the wheel, only in the source distribution of the same
  release. :func:`converter_dir` downloads that sdist with pip on first use
  (``pip download --no-deps --no-binary :all: llama-cpp-python==<pin>``), keeps only those
  files under :func:`cache_dir`, and reuses them after. ``SCALING_LLAMA_CPP_SDIST`` names an
  sdist already on disk instead (no download). Nothing of llama.cpp is committed here.

The converter runs in a subprocess with this interpreter, the way llama.cpp's README runs it.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

from scaling.errors import LocatedError

LLAMA_CPP_VERSION = "0.3.36"
"""The ``llama-cpp-python`` release the ``deploy`` extra pins (pyproject.toml); the converter is
taken from the same release, so the GGUF files it writes are ones this library reads."""

# Within the sdist: the converter script, the package it imports, and the gguf-py it inserts
# on sys.path itself (newer than, or equal to, the `gguf` wheel; never mixed with it).
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")

QUANT_TYPES = ("f32", "f16", "q8_0", "q4_k_m")
"""GGUF variants an export can write: ``f32`` and ``f16`` by the converter, the others by
``llama_model_quantize`` from the F16 file (llama.cpp's documented path)."""

_FTYPE_NAMES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


class DeployToolError(LocatedError, RuntimeError):
    """A llama.cpp tool is missing or failed; the message says what to do."""


def llama_cpp_version() -> str | None:
    """The installed ``llama-cpp-python`` version, or ``None``."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_llama_cpp():
    """``import llama_cpp``, or a :class:`DeployToolError` that says how to install it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise DeployToolError(
            f"llama-cpp-python is not importable ({exc}). Install the deploy extra: "
            f"`pip install -e '.[deploy]'` (or `make install`), which builds llama-cpp-python=="
            f"{LLAMA_CPP_VERSION} from source once (cmake and a C++ compiler; ~10 min on 2 cores)."
        ) from None
    return llama_cpp


def cache_dir() -> Path:
    """Where downloaded tool files live: ``$SCALING_CACHE_DIR`` or ``~/.cache/scaling``."""
    root = os.environ.get("SCALING_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scaling")
    return Path(root)


def _download_sdist(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", str(dest),
           f"llama-cpp-python=={LLAMA_CPP_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"))
    if proc.returncode != 0 or not found:
        raise DeployToolError(
            f"could not download the llama-cpp-python {LLAMA_CPP_VERSION} source distribution (it carries "
            f"llama.cpp's convert_hf_to_gguf.py): `{' '.join(cmd)}` exited {proc.returncode}:\n"
            f"{proc.stderr.strip()[-1500:]}\nOffline, point SCALING_LLAMA_CPP_SDIST at a copy of "
            f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz.")
    return found[0]


def converter_dir() -> Path:
    """The folder holding llama.cpp's ``convert_hf_to_gguf.py`` (fetched on first use)."""
    target = cache_dir() / f"llama-cpp-python-{LLAMA_CPP_VERSION}" / "llama.cpp"
    if (target / "convert_hf_to_gguf.py").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        given = os.environ.get("SCALING_LLAMA_CPP_SDIST")
        if given:
            sdist = Path(given)
            if not sdist.is_file():
                raise DeployToolError(f"SCALING_LLAMA_CPP_SDIST={given}: no such file")
        else:
            sdist = _download_sdist(tmp / "download")
        prefix = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
        staged = tmp / "llama.cpp"
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(prefix) or not (m.isfile() or m.isdir()):
                    continue
                rel = m.name[len(prefix):]
                if rel.split("/", 1)[0] in _CONVERTER_PARTS:
                    m.name = rel
                    members.append(m)
            if not any(m.name == "convert_hf_to_gguf.py" for m in members):
                raise DeployToolError(f"{sdist}: no {prefix}convert_hf_to_gguf.py in this archive; is it "
                                      f"llama-cpp-python {LLAMA_CPP_VERSION}'s source distribution?")
            tar.extractall(staged, members=members, filter="data")
        try:
            os.rename(staged, target)  # atomic: a parallel fetch either wins or finds it there
        except OSError:
            if not (target / "convert_hf_to_gguf.py").exists():
                raise
    return target


def convert_hf_to_gguf(hf_dir: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16",
                       timeout: float = 3600) -> Path:
    """Convert a transformers folder to one GGUF file with llama.cpp's converter."""
    script = converter_dir() / "convert_hf_to_gguf.py"
    out = Path(out)
    cmd = [sys.executable, str(script), str(hf_dir), "--outfile", str(out), "--outtype", outtype]
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # the script puts its own gguf-py first, as its README runs it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip()[-2500:]
        hint = ""
        if "pre-tokenizer was not recognized" in tail:
            hint = ("\nllama.cpp does not know this tokenizer's pre-tokenizer (the tiny rungs' own byte-level "
                    "BPE is one): it would tokenize prompts differently from training. Export without GGUF "
                    "(--gguf none) or use a rung with a tokenizer llama.cpp knows.")
        elif "Model" in tail and "is not supported" in tail:
            hint = "\nllama.cpp has no converter for this architecture: export with --gguf none."
        raise DeployToolError(f"convert_hf_to_gguf.py failed (exit {proc.returncode}) on {hf_dir}:\n{tail}{hint}")
    return out


def quantize(src: str | os.PathLike, dst: str | os.PathLike, qtype: str, threads: int | None = None,
             timeout: float = 3600) -> Path:
    """``llama_model_quantize(src -> dst)`` to ``qtype`` (``q8_0``, ``q4_k_m``), in a subprocess so
    llama.cpp's log goes to a pipe and a crash cannot take the export with it."""
    if qtype not in _FTYPE_NAMES:
        raise DeployToolError(f"quantisation type {qtype!r}: expected one of {sorted(_FTYPE_NAMES)}")
    require_llama_cpp()
    cmd = [sys.executable, "-m", "scaling.deploy.tools", "quantize", str(src), str(dst), qtype,
           str(threads or os.cpu_count() or 1)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not Path(dst).exists():
        raise DeployToolError(f"llama_model_quantize {src} -> {qtype} failed (exit {proc.returncode}):\n"
                              f"{(proc.stderr or proc.stdout).strip()[-2500:]}")
    return Path(dst)


def _quantize_main(src: str, dst: str, qtype: str, threads: str) -> int:
    import ctypes

    llama_cpp = require_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _FTYPE_NAMES[qtype])
    params.nthread = int(threads)
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


def gguf_summary(path: str | os.PathLike) -> dict:
    """What a GGUF file holds, read with the ``gguf`` package: tensor count per type and the
    metadata a deployment checks (architecture, file type, special token ids, pre-tokenizer)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    types = Counter(t.tensor_type.name for t in reader.tensors)
    meta = {}
    for key in ("general.architecture", "general.file_type", "general.name", "tokenizer.ggml.model",
                "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token"):
        field = reader.fields.get(key)
        if field is not None:
            value = field.contents()
            meta[key] = value.item() if hasattr(value, "item") else value
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    return {"tensor_types": dict(sorted(types.items())), "n_tensors": len(reader.tensors), "n_elements": n_params,
            "metadata": meta}


def tensor_type_changes(path: str | os.PathLike, qtype: str) -> dict[str, list[str]]:
    """Tensors of a quantised file not in the requested scheme's main types, by type: where
    llama.cpp fell back (a k-quant needs rows that are a multiple of 256 wide; SmolLM2-135M's
    576-wide rows get Q5_0/Q8_0 in a Q4_K_M file) or kept a tensor in F32 (norms)."""
    from gguf import GGUFReader

    main = {"q8_0": {"Q8_0"}, "q4_k_m": {"Q4_K", "Q6_K"}, "f16": {"F16"}, "f32": {"F32"}}[qtype]
    out: dict[str, list[str]] = {}
    for t in GGUFReader(str(path)).tensors:
        name = t.tensor_type.name
        if name not in main:
            out.setdefault(name, []).append(t.name)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "quantize":
        sys.exit(_quantize_main(*sys.argv[2:]))
    print("usage: python -m scaling.deploy.tools quantize SRC DST {q8_0,q4_k_m} THREADS", file=sys.stderr)
    sys.exit(2)
