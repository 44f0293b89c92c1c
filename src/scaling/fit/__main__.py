"""``python -m scaling.fit sweep_dir=outputs/multirun/<sweep> [name=...] [key=value ...]``

Hydra entry point over :func:`scaling.fit.report.run_fit` with ``conf/fit.yaml``; the conf
folder is ``$SCALING_CONF_DIR`` or the repository's ``conf/`` (see
:func:`scaling.fit.config.conf_dir`). Bad input prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

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


def main() -> None:
    from scaling.fit.config import conf_dir

    try:
        cdir = conf_dir()
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    import hydra

    from scaling.fit.report import run_fit

    sys.argv = [sys.argv[0]] + quote_path_overrides(sys.argv[1:])

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
