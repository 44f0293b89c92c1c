"""How a checkpoint fails to fit an architecture, said one way for every loader.

``from_pretrained`` fills missing weights with random values and only logs it; our loaders
refuse instead, with the keys that are missing, unexpected or of another shape.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


def loading_info_mismatches(info: Mapping[str, Any], sort_key: Callable[[str], Any] | None = None
                            ) -> tuple[list[str], list[str], list[str]]:
    """Missing, unexpected and misshapen keys from ``from_pretrained(..., output_loading_info=True)``."""
    missing = sorted(info.get("missing_keys") or (), key=sort_key)
    unexpected = sorted(info.get("unexpected_keys") or (), key=sort_key)
    mismatched = [
        f"{m[0]}: checkpoint {tuple(m[1])} vs model {tuple(m[2])}" if isinstance(m, tuple) and len(m) == 3 else str(m)
        for m in sorted(info.get("mismatched_keys") or (), key=str)
    ]
    return missing, unexpected, mismatched


def key_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def mismatch_report(header: str, missing: list[str], unexpected: list[str], mismatched: list[str],
                    hint: str | None = None) -> str | None:
    """The error text (``header`` then one line per kind of mismatch), or None when it all fits."""
    if not (missing or unexpected or mismatched):
        return None
    lines = [header]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {key_list(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {key_list(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): {key_list(mismatched, 6)}")
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)
