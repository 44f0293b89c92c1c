"""EdgeJSON-layout datasets: loading (:mod:`.io`), validation (:mod:`.validate`) and
derived-field arithmetic (:mod:`.derived`). Knows no model.
"""

from .derived import DERIVED_CHECKS, TOLERANCE, check_derived, derived_check
from .io import (
    MAX_LINE_BYTES,
    TIERS,
    DataError,
    Dataset,
    FileScan,
    Record,
    SchemaInfo,
    load_dataset,
    load_schema,
    load_schemas,
    read_records,
    scan_records,
    to_hf_dataset,
)
from .validate import CHECKS, Failure, ValidationReport, format_report, infer_role, validate_files

__all__ = [
    "CHECKS",
    "DERIVED_CHECKS",
    "MAX_LINE_BYTES",
    "TIERS",
    "TOLERANCE",
    "DataError",
    "Dataset",
    "Failure",
    "FileScan",
    "Record",
    "SchemaInfo",
    "ValidationReport",
    "check_derived",
    "derived_check",
    "format_report",
    "infer_role",
    "load_dataset",
    "load_schema",
    "load_schemas",
    "read_records",
    "scan_records",
    "to_hf_dataset",
    "validate_files",
]
