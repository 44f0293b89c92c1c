"""Which dataset a job uses (``conf/data/*.yaml``), generating synthetic data on first use."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaling.data.heldout import check_held_out
from scaling.data.io import DataError, Dataset, load_dataset, scan_records
from scaling.data.prompts import PromptFormat


EDGEJSON_ENV = "EDGEJSON_DIR"
"""The environment variable ``conf/data/edgejson_v3.yaml`` takes ``data.root`` from."""


@dataclass(frozen=True)
class DataSpec:
    """A dataset in the EdgeJSON layout and how its prompts are formatted."""

    name: str = "edgejson"
    """Label recorded in results.json (``edgejson``, ``synthetic``)."""
    version: str = "v3"
    """Sub-folder of ``root`` holding ``train.jsonl`` and ``test.jsonl``."""
    root: str | None = None
    """Dataset root: ``<root>/<version>/{train,test}.jsonl`` and ``<root>/schemas/<tier>/``."""
    train_version: str | None = None
    """Sub-folder of ``root`` whose ``train.jsonl`` is trained on, when not ``version``'s:
    ``train_version=v2`` with ``version=v3`` trains on EdgeJSON v2 and scores on v3's test
    set (the data-quality comparison). results.json records both files' sha256."""
    train_file: str | None = None
    """Explicit train JSONL (overrides the layout and ``train_version``)."""
    test_file: str | None = None
    """Explicit test JSONL (overrides the layout)."""
    schemas_dir: str | None = None
    """Explicit schemas folder (overrides ``<root>/schemas``)."""
    synth: dict | None = None
    """Synthetic generator settings (``seed``, ``n_train``, ``n_test``): when set and ``root``
    holds no data yet, the data is generated there first."""
    prompt: dict = field(default_factory=dict)
    """Prompt format, see :class:`scaling.data.prompts.PromptFormat`."""
    train_fraction: float = 1.0
    """Share of the training records a job fine-tunes on (the data axis: 0.25, 0.5, 1.0),
    drawn per schema by the job's seed, nested across fractions
    (:func:`scaling.data.sft.stratified_fraction`); records ``finetune.val_fraction`` holds
    out are taken first, so validation is the same at every fraction."""
    exclude_contradicting: bool = False
    """Drop the training records whose gold contradicts their prompt (a value the prompt does
    not hold, a line it lacks: :func:`scaling.data.readings.contradicting`; 19 of v3's 629)
    from what a job fine-tunes on; their ids go in results.json (``data.excluded``). Validation
    records are drawn first and kept as they are, and a test file is never filtered (its
    contradicting records are scored, and reported as such). Off by default: on the reference
    recipe (one seed) training without them scored lower, not higher (BENCHMARKS)."""

    extra_train_file: str | None = None
    """More training records beyond the train split (EdgeJSON:
    ``${data.root}/v3_extra/train.jsonl``, 1,258 records from the generator that made v3, twice
    v3 train per schema): the data axis past 100%. Validation is still drawn from the train split
    alone, so it is the same at every point; the file's sha256 goes in ``data.files`` and the
    recipe names the training data ``v3 + v3_extra/train.jsonl <fraction>``. Checked like the
    train file: never a test file, no id or prompt shared with one, no id shared with the train
    split."""
    extra_train_fraction: float = 1.0
    """Share of ``extra_train_file``'s records trained on, per schema, by the job's seed and
    nested (:func:`scaling.data.sft.stratified_fraction`): with EdgeJSON, 0.5 is the 200% point
    (629 + 629 records) and 1.0 the 300% point (629 + 1,258)."""

    def __post_init__(self) -> None:
        e = self.extra_train_fraction
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0.0 < e <= 1.0:
            raise ValueError(f"data.extra_train_fraction={e!r}: expected a fraction in (0, 1]")
        f = self.train_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f <= 1.0:
            raise ValueError(f"data.train_fraction={f!r}: expected a fraction in (0, 1]")

    @property
    def prompt_format(self) -> PromptFormat:
        return PromptFormat.from_config(self.prompt)

    def load(self) -> Dataset:
        """Load (and, for synthetic data, first generate) the dataset; refused when the training
        file is a test file or shares records with one (:func:`scaling.data.heldout.check_held_out`)."""
        if self.synth is not None and self.root is not None:
            ensure_synthetic(Path(self.root), version=self.version, **self.synth)
        else:
            self._check_present()
        dataset = load_dataset(
            self.root,
            version=self.version,
            train_file=self._train_file(),
            test_file=self.test_file,
            schemas_dir=self.schemas_dir,
            name=self.name,
        )
        check_held_out(dataset, self._train_setting())
        if self.extra_train_file is not None:
            dataset = self._with_extra_train(dataset)
        return dataset

    def _with_extra_train(self, dataset: Dataset) -> Dataset:
        """``dataset`` with the records of ``extra_train_file`` (read against its schemas)."""
        path = Path(self.extra_train_file)
        if not path.is_file():
            raise DataError("not found (or not a file)", path, field="data.extra_train_file")
        scan = scan_records(path, dataset.schemas, stop_at_first=True)
        if scan.errors:
            raise scan.errors[0]
        ids = {r.id: r for r in dataset.train}
        clash = next((r for r in scan.records if r.id in ids), None)
        if clash is not None:
            raise DataError(f"record id {clash.id!r} is also in the train split ({ids[clash.id].file}:"
                            f"{ids[clash.id].line}): extra training records must be new records", path, clash.line,
                            field="data.extra_train_file")
        extended = replace(dataset, extra_train=scan.records, files={**dataset.files, str(path): scan.sha256})
        check_held_out(extended, "data.extra_train_file", records=scan.records)
        return extended

    def _train_setting(self) -> str:
        """The config key that chose the training file, as an error about it names it."""
        if self.train_file is not None:
            return "data.train_file"
        return "data.train_version" if self.train_version not in (None, self.version) else "data.version"

    def _check_present(self) -> None:
        """A dataset root without the data (no EdgeJSON downloaded, EDGEJSON_DIR unset or wrong)
        is one error saying where it looked and how to point it elsewhere."""
        if self.root is None:
            return  # explicit files only: load_dataset names whichever is missing
        root = Path(self.root)
        needed = [(self.schemas_dir, root / "schemas"), (self.test_file, root / self.version / "test.jsonl"),
                  (self.train_file, root / (self.train_version or self.version) / "train.jsonl")]
        missing = next((path for explicit, path in needed if explicit is None and not path.exists()), None)
        if missing is None:
            return
        env = os.environ.get(EDGEJSON_ENV)
        raise DataError(
            f"{self.name} data not found (data.root={self.root!r} is {root.resolve()}; {EDGEJSON_ENV} is "
            f"{repr(env) if env is not None else 'not set'}): set {EDGEJSON_ENV} (or data.root) to the folder "
            f"holding schemas/ and {self.version}/. EdgeJSON is CycleCore Technologies' SLMBench release; "
            "README 'The data' says where to get it, and `scaling-data layout` lays out a download", missing)

    def _train_file(self) -> str | None:
        """The training file ``load_dataset`` reads: ``train_file``, or the one ``train_version``
        names, or None for the layout default."""
        if self.train_version is None or self.train_version == self.version:
            return self.train_file
        if self.train_file is not None:
            raise DataError(f"data.train_version={self.train_version} and data.train_file={self.train_file} "
                            "both name the training file: give one")
        if self.root is None:
            raise DataError(f"data.train_version={self.train_version} needs data.root (the folder holding "
                            f"{self.train_version}/train.jsonl)")
        return str(Path(self.root) / self.train_version / "train.jsonl")


def ensure_synthetic(root: Path, version: str = "v1", seed: int = 0, n_train: int | None = None,
                     n_test: int | None = None, **extra: Any) -> Path:
    """Generate synthetic data into ``root`` unless it is already there.

    Generated in a temporary sibling folder and renamed into place, so parallel sweep jobs
    never read a half-written dataset. ``n_train`` / ``n_test`` left out: the generator's
    defaults (:data:`scaling.data.synthetic.DEFAULT_N_TRAIN`, the ones ``conf/data/synthetic.yaml``
    repeats).
    """
    from scaling.data.synthetic import generate  # here: the word lists load only when data is generated

    if (root / version / "train.jsonl").exists() and (root / version / "test.jsonl").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        sizes = {k: v for k, v in (("n_train", n_train), ("n_test", n_test)) if v is not None}
        generate(tmp, seed=seed, version=version, **sizes, **extra)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / version / "test.jsonl").exists():  # lost a race to another job: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
