"""``python -m scaling.data layout SRC OUT``: a downloaded EdgeJSON release in the folder
layout ``data.root`` expects.

EdgeJSON is published by CycleCore Technologies in their SLMBench repository
(https://github.com/CycleCore-Technologies/slmbench, Apache-2.0), as

    benchmarks/edge_json/data/edgejson_{train,test}_v3.jsonl   (and _v2)
    benchmarks/edge_json/schemas/{simple,medium,complex}/<schema_id>.json

and this project reads

    <root>/v3/{train,test}.jsonl   <root>/v2/{train,test}.jsonl   <root>/schemas/<tier>/<schema_id>.json

The command copies (or links, ``--link``) one into the other, then loads the result as a job
would and says whether the v3 files are the ones this project's reference runs were scored on.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path

from .io import TIERS, DataError, load_dataset

RELEASE_DIR = Path("benchmarks") / "edge_json"
"""Where EdgeJSON lies in a checkout of SLMBench."""

REFERENCE_SHA256 = {
    "v3/train.jsonl": "2eb76b30cfbeffa3f622e798ea83476fa17fc28041ff6f37efc0a2c4b56b6114",
    "v3/test.jsonl": "39ce24e2c72e1864d759e53ad856a554bab724e808f9b9a957c6388c1875cd30",
}
"""The v3 files the committed reference runs read (their ``results.json`` ``data.files``):
629 and 158 records, SLMBench commit 12a8f8a."""


def release_root(src: Path) -> Path:
    """The ``edge_json`` folder of an SLMBench checkout (``src`` may be the checkout or that folder)."""
    for candidate in (src / RELEASE_DIR, src):
        if (candidate / "data").is_dir() and (candidate / "schemas").is_dir():
            return candidate
    raise DataError(f"not an SLMBench checkout: expected {RELEASE_DIR}/data/ and {RELEASE_DIR}/schemas/ below it "
                    "(git clone https://github.com/CycleCore-Technologies/slmbench)", src)


def plan(src: Path) -> dict[Path, Path]:
    """``{target (relative to OUT): source file}`` for everything ``src`` holds."""
    edge = release_root(src)
    files: dict[Path, Path] = {}
    for version in ("v3", "v2"):
        for split in ("train", "test"):
            source = edge / "data" / f"edgejson_{split}_{version}.jsonl"
            if source.is_file():
                files[Path(version) / f"{split}.jsonl"] = source
            elif version == "v3":
                raise DataError("missing from the release: EdgeJSON v3 needs it", source)
    for tier in TIERS:
        for schema in sorted((edge / "schemas" / tier).glob("*.json")):
            files[Path("schemas") / tier / schema.name] = schema
    if not any(t.parts[0] == "schemas" for t in files):
        raise DataError(f"no schemas under it (expected {', '.join(TIERS)}/<schema_id>.json)", edge / "schemas")
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lay_out(src: Path, out: Path, link: bool = False) -> dict[Path, Path]:
    """Copy (``link``: symlink) the release at ``src`` into ``out``. A file already there with
    other content is refused (nothing is overwritten); the same content is left alone."""
    files = plan(src)
    for rel, source in files.items():
        target = out / rel
        if target.exists() or target.is_symlink():
            if not target.exists() or _sha256(target) != _sha256(source):
                raise DataError(f"already there with other content than {source}: move it away first", target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.symlink(source.resolve(), target)
        else:
            shutil.copyfile(source, target)
    return files


def _run_layout(args: argparse.Namespace) -> int:
    out = Path(args.out)
    files = lay_out(Path(args.src), out, link=args.link)
    data = load_dataset(out, version="v3")  # as a job reads it: raises DataError naming file and line
    print(f"{'linked' if args.link else 'copied'} {len(files)} files into {out}/: v3 {len(data.train)} train and "
          f"{len(data.test)} test records, {len(data.schemas)} schemas"
          + (", v2" if (out / "v2" / "train.jsonl").exists() else ""))
    for rel, sha in REFERENCE_SHA256.items():
        same = _sha256(out / rel) == sha
        print(f"  {rel}: {'the file' if same else 'NOT the file'} the reference runs in outputs/reference/ were "
              f"scored on (sha256 {sha[:12]}...)")
    print(f"use it: export EDGEJSON_DIR={out.resolve()}   (or data.root={out.resolve()})")
    return 0


def add_layout_subparser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layout",
        help="lay out a downloaded EdgeJSON release (SLMBench checkout) as data.root expects",
        description="Copy EdgeJSON from an SLMBench checkout (benchmarks/edge_json/data/edgejson_{train,test}_v3.jsonl "
                    "and benchmarks/edge_json/schemas/) into OUT/v3/, OUT/v2/ and OUT/schemas/, then load it "
                    "as a job would. Point EDGEJSON_DIR (or data.root) at OUT.",
    )
    p.add_argument("src", metavar="SRC", help="an SLMBench checkout (or its benchmarks/edge_json folder)")
    p.add_argument("out", metavar="OUT", help="the dataset root to create (outside this repository)")
    p.add_argument("--link", action="store_true", help="symlink the files instead of copying them")
    p.set_defaults(func=_run_layout)
