"""Typed configs from Hydra/OmegaConf mappings, with errors that name the flag."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def to_plain(cfg: Any) -> dict:
    """A plain ``dict`` from a DictConfig (resolved), a mapping or ``None``."""
    if cfg is None:
        return {}
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def dataclass_from_config(cls: type[T], cfg: Any, flag: str, error: type[Exception] = ValueError) -> T:
    """``cls(**cfg)``, but unknown keys raise ``error`` naming ``flag.<key>`` and the known keys."""
    data = to_plain(cfg)
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {flag} keys {[f'{flag}.{k}' for k in unknown]}; known: {sorted(known)}")
    return cls(**data)
