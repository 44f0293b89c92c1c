"""How long reading every EdgeJSON prompt back takes (scaling.data.readings), file by file.

    python bench/readings.py [--root ../shared/edgejson] [--out FILE.json]

For each of v3 train/test and v3_extra train/test_complex: records, wall and CPU seconds of
reading every prompt and checking its gold (:func:`scaling.data.readings.read_record`), and the
most readings any one prompt has: the number of answers an enumeration of the lists' product
would have to visit for that prompt, where the per-list counting visits each list once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from scaling.data import load_schemas, read_records
from scaling.data.readings import read_record

FILES = ("v3/train.jsonl", "v3/test.jsonl", "v3_extra/train.jsonl", "v3_extra/test_complex.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("EDGEJSON_DIR", "../shared/edgejson"))
    ap.add_argument("--out", help="also write the JSON result here")
    args = ap.parse_args()
    root = Path(args.root)
    schemas = load_schemas(root / "schemas")
    rows = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for name in FILES:
        path = root / name
        if not path.is_file():
            continue
        records = read_records(path, schemas)
        w, c = time.perf_counter(), time.process_time()
        readings = [read_record(r, schemas[r.schema_id].schema) for r in records]
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        most = max(readings, key=lambda r: r.readings.count)
        rows.append({"file": name, "records": len(records), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                     "ms_per_record": round(1000 * wall / len(records), 3), "most_readings": most.readings.count,
                     "most_readings_id": most.id, "lists_in_it": len(most.readings.lists)})
        print(f"{name}: {len(records)} records in {wall:.2f} s wall / {cpu:.2f} s CPU; most readings of one prompt: "
              f"{most.readings.count:,} ({most.id}, {len(most.readings.lists)} lists)")
    total = {"records": sum(r["records"] for r in rows), "wall_s": round(time.perf_counter() - wall0, 3),
             "cpu_s": round(time.process_time() - cpu0, 3)}
    print(f"all: {total['records']} records in {total['wall_s']:.2f} s wall (reading the files included)")
    result = {"bench": "readings", "files": rows, "total": total, "machine": platform.node(),
              "python": platform.python_version(), "nice": os.nice(0), "loadavg": list(os.getloadavg())}
    if args.out:
        Path(args.out).write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
