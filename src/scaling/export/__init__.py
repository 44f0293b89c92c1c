"""Versioned exports of fine-tuned rungs: ``python -m scaling.export JOB_DIR --version 1.0.0``.

A job folder (``results.json`` + the train cache's weights) becomes
``outputs/models/<name>/v<version>/``: a transformers folder, GGUF files written by llama.cpp's
own converter and quantiser, a model card with metrics, intervals and limits, ``export.json``
(the manifest every other file is generated from) and ``SHA256SUMS``. A published version is
immutable; ``outputs/models/LADDER.md`` and ``ladder.json`` list every version.
"""

from scaling.export.core import DEFAULT_GGUF, GGUF_TYPES, base_license, export_job, published_versions
from scaling.export.ladder import default_name, parse_version, version_key, write_ladder
from scaling.export.source import ExportError, JobSource

__all__ = [
    "DEFAULT_GGUF",
    "GGUF_TYPES",
    "ExportError",
    "JobSource",
    "base_license",
    "default_name",
    "export_job",
    "parse_version",
    "published_versions",
    "version_key",
    "write_ladder",
]
