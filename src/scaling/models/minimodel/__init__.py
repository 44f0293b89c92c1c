"""MiniModel-200M-Base (``xTimeCrystal/MiniModel-200M-Base``) as a native ``transformers``
causal LM, by idea:

- :mod:`.network`: the config and the network (the port of the upstream file that trained it,
  documented there), registered with the ``transformers`` Auto classes on import;
- :mod:`.checkpoint`: published-format weights (``model.safetensors``) read, checked and loaded;
- :mod:`.tokenizer`: the published tokenizer, its special-token roles and BOS;
- :mod:`.hub`: a folder, a file or a hub repo id, whatever its format (:func:`load_minimodel_pretrained`).

Every public name is importable from here.
"""

from .checkpoint import (
    MiniModelWeightsError,
    load_minimodel_weights,
    load_published_minimodel,
    minimodel_config_from_state_dict,
)
from .hub import download_minimodel, load_minimodel_pretrained
from .network import (
    MINIMODEL_EPS,
    MiniModelConfig,
    MiniModelForCausalLM,
    apply_rotary,
    register_minimodel,
    rms_norm,
    rotary_cos_sin,
)
from .tokenizer import (
    MINIMODEL_SPECIAL_TOKENS,
    MiniModelTokenizerError,
    load_minimodel_tokenizer,
    special_token_ids,
    special_token_roles,
)

__all__ = [
    "MINIMODEL_EPS",
    "MINIMODEL_SPECIAL_TOKENS",
    "MiniModelConfig",
    "MiniModelForCausalLM",
    "MiniModelTokenizerError",
    "MiniModelWeightsError",
    "apply_rotary",
    "download_minimodel",
    "load_minimodel_pretrained",
    "load_minimodel_tokenizer",
    "load_minimodel_weights",
    "load_published_minimodel",
    "minimodel_config_from_state_dict",
    "register_minimodel",
    "rms_norm",
    "rotary_cos_sin",
    "special_token_ids",
    "special_token_roles",
]
