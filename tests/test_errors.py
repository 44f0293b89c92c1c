"""scaling.errors: one base, one formatting, for every error that names a file, a line or a field."""

from __future__ import annotations

import pickle

import pytest

from scaling.compare.runs import CompareError
from scaling.complex_plus import ComplexPlusError
from scaling.typed_config import ConfigError
from scaling.data import DataError
from scaling.deploy.tools import DeployToolError
from scaling.errors import LocatedError
from scaling.export.source import ExportError
from scaling.failures import FailuresError
from scaling.fit.errors import FitError
from scaling.jobs.resume import CheckpointError
from scaling.jobs.from_job import SourceJobError, WeightsNotFound
from scaling.models.errors import ModelLoadError
from scaling.models.minimodel.checkpoint import MiniModelWeightsError
from scaling.models.minimodel.tokenizer import MiniModelTokenizerError
from scaling.rescore import RescoreError

LOCATED = (DataError, CompareError, ComplexPlusError, RescoreError, FitError, FailuresError, ConfigError,
           ExportError, SourceJobError, WeightsNotFound, CheckpointError, ModelLoadError, MiniModelWeightsError,
           MiniModelTokenizerError, DeployToolError)


@pytest.mark.parametrize("cls", LOCATED)
def test_every_located_error_derives_from_the_one_base_and_formats_alike(cls):
    assert issubclass(cls, LocatedError)
    assert str(cls("bad value", "runs/a/results.json", 3, "model.key")) == \
        "runs/a/results.json:3: field 'model.key': bad value"
    assert str(cls("bad value", "runs/a/results.json")) == "runs/a/results.json: bad value"
    assert str(cls("bad value", line=7)) == "line 7: bad value"
    assert str(cls("bad value", field="seed")) == "field 'seed': bad value"
    assert str(cls("runs/a: no such folder")) == "runs/a: no such folder"
    err = pickle.loads(pickle.dumps(cls("bad value", "f.json", 2, "x")))
    assert (err.message, err.file, err.line, err.field, str(err)) == ("bad value", "f.json", 2, "x",
                                                                      "f.json:2: field 'x': bad value")


def test_the_builtin_bases_callers_catch_are_kept():
    assert issubclass(FailuresError, ValueError) and issubclass(ConfigError, ValueError)
    assert issubclass(ExportError, RuntimeError) and issubclass(SourceJobError, RuntimeError)
    assert issubclass(ModelLoadError, RuntimeError)


def test_data_error_keeps_its_check_through_pickling():
    err = pickle.loads(pickle.dumps(DataError("not an object", "d.jsonl", 4, check="parse")))
    assert err.check == "parse" and str(err) == "d.jsonl:4: not an object"
