"""``python -m scaling.fit sweep_dir=outputs/multirun/<sweep> [name=...] [key=value ...]``
(``scaling-fit``).

Hydra entry point over :func:`scaling.fit.run.run_fit` with ``conf/fit.yaml``; the conf
folder is ``$SCALING_CONF_DIR`` or the repository's ``conf/`` (see
:func:`scaling.fit.config.conf_dir`). ``--help`` lists fit's own options (the documented keys
of ``fit.yaml``), and any other key is refused before Hydra sees it. Bad input prints
``error: ...`` and exits 2.
"""

from __future__ import annotations

import re
import sys
from typing import Sequence

from scaling.fit.errors import FitError

#: Overrides whose value is a path: quoted for Hydra's parser when it holds characters the
#: parser would read as syntax (job folders are named like ``0_model=smol135,seed=0``).
PATH_KEYS = ("sweep_dir", "reference", "out_root", "multirun_root", "name", "published")
_SPECIAL = set("=,[]{}()'\" \\:$")


def quote_path_overrides(args: Sequence[str]) -> list[str]:
    """Wrap the values of ``sweep_dir=...`` (and the other :data:`PATH_KEYS`) in single quotes
    when they contain characters Hydra's override grammar treats as syntax."""
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        if (sep and key.lstrip("+~") in PATH_KEYS and value and value[0] not in "'\""
                and any(ch in _SPECIAL for ch in value)):
            a = f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(a)
    return out


#: Hydra's flags that take the next argument as their value (``--cfg job``, ``-sc install=bash``).
_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "-sc", "--shell-completion", "-i", "--info"}
_HIDDEN_KEYS = ("defaults", "hydra")  # in fit.yaml, but not options of the analysis


def _yaml_chunks(text: str) -> list[tuple[str | None, list[str]]]:
    """A YAML file's top-level entries: (key, lines) with the comments above each key."""
    chunks: list[tuple[str | None, list[str]]] = []
    pending: list[str] = []
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            chunks.append((line.split(":", 1)[0].strip(), pending + [line]))
            pending = []
        elif line.startswith("#") or not line.strip():
            pending.append(line)
        elif chunks:
            chunks[-1][1].append(line)
    return chunks


def fit_options(cdir) -> list[str]:
    """The analysis's own keys: the top-level keys of ``fit.yaml``."""
    return [key for key, _ in _yaml_chunks((cdir / "fit.yaml").read_text()) if key not in _HIDDEN_KEYS]


def fit_help(cdir) -> str:
    """``--help``: what scaling.fit does and its options as ``fit.yaml`` documents them."""
    options = "\n".join(line for key, lines in _yaml_chunks((cdir / "fit.yaml").read_text())
                        if key not in _HIDDEN_KEYS for line in lines).strip("\n")
    return (f"usage: scaling-fit [key=value ...]      (or: python -m scaling.fit ...)\n\n"
            "Scaling fits of finished runs: reads the results.json and predictions.jsonl of a sweep's jobs (no model,\n"
            "no torch) and writes fit.json, report.md, tables/ and figures/ under out_root/<name>/.\n\n"
            "  scaling-fit                                    the newest sweep under outputs/multirun/\n"
            "  scaling-fit sweep_dir=outputs/multirun/<sweep> name=paper\n"
            "  scaling-fit 'sweep_dirs=[outputs/multirun/a,outputs/multirun/b]' params=non_embedding\n\n"
            f"Options (key=value; nested ones as verdicts.track1.params=...), from {cdir / 'fit.yaml'}:\n\n"
            f"{options}\n\n"
            "Hydra's flags work as for scaling-train: --cfg job prints the composed config, --hydra-help lists them.\n")


def check_overrides(args: Sequence[str], options: Sequence[str]) -> str | None:
    """Why ``args`` are not overrides of scaling.fit (an error line), or None. Keys must be
    fit's own options (or ``hydra...``): scaling.fit shares its conf/ folder with
    scaling.train, so Hydra would offer train's groups (``+model=x``) and accept them silently."""
    known = set(options) | {"hydra"}
    after_flag = False
    for arg in args:
        if after_flag or arg.startswith("-"):
            after_flag = arg in _VALUE_FLAGS
            continue
        key, sep, _ = arg.partition("=")
        if not sep:
            return (f"{arg}: expected key=value; to fit a sweep folder: sweep_dir={arg}" if "/" in arg
                    else f"{arg}: expected key=value (scaling-fit --help lists the options)")
        name = re.split(r"[./@]", key.lstrip("+~"), maxsplit=1)[0]
        if name not in known:
            what = (f"{name} is an option of scaling.train, and scaling.fit reads finished runs"
                    if name in _train_keys() else "no such option")
            return f"{arg}: scaling.fit has no option '{name}' ({what}). Its options: {', '.join(options)}"
    return None


def _train_keys() -> set[str]:
    """Top-level keys and config groups of scaling.train (for a clearer refusal)."""
    from omegaconf import OmegaConf

    from scaling.paths import conf_dir

    folder = conf_dir()
    keys = {p.name for p in folder.iterdir() if p.is_dir()}
    try:
        keys |= {str(k) for k in OmegaConf.load(folder / "train.yaml") if k != "defaults"}
    except OSError:
        pass
    return keys


def main() -> None:
    # The imports below wait for the arguments: --help and a refused override answer before
    # omegaconf, Hydra and the analysis load.
    from scaling.fit.config import conf_dir

    try:
        cdir = conf_dir()
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        print(fit_help(cdir))
        return
    problem = check_overrides(args, fit_options(cdir))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    import hydra

    from scaling.fit.run import run_fit

    sys.argv = [sys.argv[0]] + quote_path_overrides(args)

    @hydra.main(config_path=str(cdir), config_name="fit", version_base="1.3")
    def _app(cfg) -> None:
        try:
            run_fit(cfg)
        except FitError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:  # out_root not writable, a full disk: the path and the reason, no traceback
            print(f"error: {e.filename or cfg.get('out_root')}: {e.strerror or e}", file=sys.stderr)
            sys.exit(2)

    _app()


if __name__ == "__main__":
    main()
