"""Typed configs from Hydra/OmegaConf mappings, with errors that name the flag."""

from __future__ import annotations

from typing import Any, TypeVar

from scaling.errors import LocatedError

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


def optional_mapping(value: Any, cls: type[T], flag: str, example: str,
                     error: type[Exception] = ValueError) -> T | None:
    """A config option that is null (None: off) or a mapping read by ``cls.from_config``
    (an instance passes through); anything else raises ``error`` naming ``flag``."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, dict) and not hasattr(value, "keys"):
        raise error(f"{flag}={value!r}: expected a mapping such as {example} or null")
    return cls.from_config(value)  # type: ignore[attr-defined]


def structured_schema(cls: type, target: str | None = None, nested: dict[str, type] | None = None,
                      name: str | None = None, module: str | None = None) -> type:
    """The Hydra/OmegaConf schema of a config dataclass: the same fields, types and defaults
    (its docstrings stay the one description), so a composed config that gives a field the
    wrong type, or a key the class does not have, fails at compose time naming the full key.

    It is a new, mutable dataclass (OmegaConf makes a frozen one read-only, and Hydra must
    merge into it): ``target`` adds the ``_target_`` key that ``hydra.utils.instantiate``
    reads; ``nested`` types a mapping field with another schema (``{"optim": <schema>}``,
    never null: its default is that schema's defaults). Annotations OmegaConf cannot hold
    become what it can: a bare ``dict`` a mapping of any values, a tuple a list. A mapping that
    may be null (``dict | None``) is left untyped (``Any``), checked by the class when it is
    built: OmegaConf 2.3 cannot merge a command-line mapping (``finetune.tier_repeat={complex:2}``)
    into such a field while it is null.

    ``module``: the schema becomes that module's attribute ``<name>``, so a config typed with it
    pickles (the parallel and submitit launchers send configs to other processes, which
    find the class again by importing the module)."""
    import dataclasses
    import typing

    from omegaconf import MISSING

    nested = nested or {}
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        typ = nested.get(f.name) or _omegaconf_type(hints[f.name])
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        if no_default:
            spec = dataclasses.field(default=MISSING)
        elif f.name in nested:  # the nested schema's defaults (None as a default reads as "the defaults")
            spec = dataclasses.field(default_factory=nested[f.name])
        elif f.default is dataclasses.MISSING:
            spec = dataclasses.field(default_factory=f.default_factory)  # type: ignore[misc]
        elif isinstance(f.default, tuple):
            spec = dataclasses.field(default_factory=lambda v=f.default: list(v))
        else:
            spec = dataclasses.field(default=f.default)
        fields.append((f.name, typ, spec))
    if target is not None:
        fields.insert(0, ("_target_", str, dataclasses.field(default=target)))
    name = name or f"{cls.__name__}Schema"
    schema = dataclasses.make_dataclass(name, fields)
    if module is not None:
        import sys

        schema.__module__ = module
        setattr(sys.modules[module], name, schema)
    return schema


def _omegaconf_type(annotation: Any) -> Any:
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _omegaconf_type(rest[0]) if len(rest) == 1 else Any
        if type(None) not in args:
            return inner
        return Any if typing.get_origin(inner) in (dict, list) else typing.Optional[inner]
    if annotation is dict:
        return typing.Dict[str, Any]
    if origin is dict:
        return typing.Dict[_omegaconf_type(args[0]), _omegaconf_type(args[1])]
    if annotation in (list, tuple):
        return typing.List[Any]
    if origin in (list, tuple):
        return typing.List[_omegaconf_type(args[0])]
    return annotation


def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's docstring (the string literal written under the field), read from
    the source of ``cls`` and its bases (a subclass's own wins): the one description a setting
    has, which ``--help`` prints (:func:`scaling.jobs.config.settings_help`). A field without
    one is absent; a class whose source cannot be read (built at run time) has none."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for field_node, doc_node in zip(body, body[1:]):
            if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                    and isinstance(doc_node, ast.Expr) and isinstance(doc_node.value, ast.Constant)
                    and isinstance(doc_node.value.value, str)):
                docs[field_node.target.id] = inspect.cleandoc(doc_node.value.value)
    return docs


class ConfigError(LocatedError, ValueError):
    """A config that composed but cannot be built; the message starts with the config key."""


def instantiate_node(conf: Any) -> Any:
    """``hydra.utils.instantiate(conf)`` whose errors name the config key: the class's own error
    when its message names the key already (``finetune.max_steps=0: ...``), else a
    :class:`ConfigError` that starts with Hydra's ``full_key`` (``model: TypeError:
    DataSpec.__init__() got an unexpected keyword argument 'key'``)."""
    import re

    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(conf, _convert_="all")
    except InstantiationException as exc:
        found = re.search(r"full_key: (\S+)", str(exc))
        key = found.group(1) if found else str(conf._get_full_key(None) or "config")
        cause = exc.__cause__
        if cause is None:
            raise ConfigError(f"{key}: {str(exc).strip().splitlines()[0]}") from exc
        if f"{key}." in str(cause) or f"{key}=" in str(cause):
            raise cause from None
        raise ConfigError(f"{key}: {type(cause).__name__}: {cause}") from cause
