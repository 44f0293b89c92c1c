"""The published MiniModel tokenizer: which token plays which role, and a ``transformers`` fast
tokenizer that starts every sequence with BOS.

Special tokens and BOS. Without ``tokenizer_config.json`` nothing says which token is BOS/EOS/PAD;
:func:`load_minimodel_tokenizer` and :func:`special_token_ids` read the roles from
``special_tokens_map.json`` (else the ``<s>``/``</s>``/``<pad>`` names) so the tokenizer and the model
config agree, and ``scaling.models.build_model`` refuses a pair that does not. Sequences start with
BOS: the model card says every pretraining sequence began with ``<s>`` (the attention sink), so the
tokenizer's post-processor prepends it and ``scaling.data.sft`` puts it before every prompt. The
training loss of the first upstream file (the one :mod:`.network` follows) uses ``ignore_index=0``
(its packed rows pad with id 0, and the rolled-over last target of each row is zeroed): that
removes id 0 as a *target*, it says nothing about the input at position 0, which was ``<s>`` in
every row. Our labels mask prompt and padding with -100 by
position, so fine-tuning learns EOS whatever its id.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import LocatedError

__all__ = [
    "MINIMODEL_SPECIAL_TOKENS",
    "MiniModelTokenizerError",
    "load_minimodel_tokenizer",
    "special_token_ids",
    "special_token_roles",
]


class MiniModelTokenizerError(LocatedError, ValueError):
    """A MiniModel tokenizer file is unreadable or names a special token that is not in its vocabulary."""


MINIMODEL_SPECIAL_TOKENS: dict[str, str] = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
"""Roles assumed for a ``tokenizer.json`` with no ``special_tokens_map.json`` / ``tokenizer_config.json``
beside it (the published tokenizer's token names); a role whose token is not in the vocabulary is unset."""

_ROLES = ("bos_token", "eos_token", "pad_token", "unk_token")


def special_token_roles(folder: str | Path) -> tuple[dict[str, str], str]:
    """Role -> token text for the tokenizer files in ``folder``, and where the roles came from.

    Read from ``special_tokens_map.json`` (what the hub repo ships), else from ``tokenizer_config.json``
    (what ``save_pretrained`` writes), else :data:`MINIMODEL_SPECIAL_TOKENS`. Values may be strings or
    ``{"content": ...}`` objects, as ``transformers`` writes them.
    """
    folder = Path(folder)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise MiniModelTokenizerError(f"{path}: unreadable JSON ({err})") from err
        roles = {}
        for role in _ROLES:
            value = data.get(role)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and value:
                roles[role] = value
        if roles or name == "special_tokens_map.json":
            return roles, str(path)
    return {k: v for k, v in MINIMODEL_SPECIAL_TOKENS.items()}, "the <s>/</s>/<pad> convention"


def special_token_ids(tokenizer_json: str | Path) -> dict[str, int]:
    """``bos_token_id`` / ``eos_token_id`` / ``pad_token_id`` of a ``tokenizer.json``, with the roles of
    :func:`special_token_roles` (files beside it). A role named by a file whose token is not in the
    vocabulary raises :class:`MiniModelTokenizerError` naming the file, role and token."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
    except Exception as err:  # tokenizers raises its own Exception subclass for bad files
        raise MiniModelTokenizerError(f"{tokenizer_json}: not a readable tokenizer.json ({err})") from err
    roles, origin = special_token_roles(Path(tokenizer_json).parent)
    ids = {}
    for role, token in roles.items():
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            if origin.endswith(".json"):
                raise MiniModelTokenizerError(
                    f"{origin}: {role} {token!r} is not in the vocabulary of {tokenizer_json}"
                )
            continue
        if role != "unk_token":
            ids[f"{role}_id"] = token_id
    return ids


def load_minimodel_tokenizer(tokenizer_json: str | Path):
    """The published MiniModel tokenizer as a ``transformers`` fast tokenizer, ready for training.

    The hub repo ships ``tokenizer.json`` and ``special_tokens_map.json`` but no
    ``tokenizer_config.json``, so nothing tells ``AutoTokenizer`` which token is BOS/EOS/PAD, and
    ``tokenizer.json`` alone gives none. Roles come from :func:`special_token_roles`, so the ids agree
    with :func:`special_token_ids`, which sets the model config's ids for published weights.

    Sequences start with BOS: the model card says every pretraining sequence started with ``<s>``
    (an attention sink; bin-packing concatenated such sequences), so the post-processor is set to
    ``<s> $A`` and ``tokenizer(text)`` starts with BOS, like Llama-2's tokenizer. Code that encodes
    pieces with ``add_special_tokens=False`` asks :func:`scaling.data.sft.bos_prefix` for the prefix.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tokenizer_json = Path(tokenizer_json)
    ids = special_token_ids(tokenizer_json)  # validates the roles against the vocabulary
    roles, _ = special_token_roles(tokenizer_json.parent)
    try:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json))
    except Exception as err:  # noqa: BLE001 - tokenizers' own exception type
        raise MiniModelTokenizerError(f"{tokenizer_json}: not a readable tokenizer.json ({err})") from err
    vocab = tok.get_vocab()
    for role, token in roles.items():
        if token in vocab:
            setattr(tok, role, token)
    if "bos_token_id" in ids:
        bos = roles["bos_token"]
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B:1", special_tokens=[(bos, ids["bos_token_id"])]
        )
    return tok
