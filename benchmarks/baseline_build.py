"""Rows per second and peak memory of ``build_baseline`` on a generated training file.

Writes a file of ``--rows`` rows into a temporary folder (deleted afterwards),
then builds its baseline and prints rows/s, MB/s, whether a second pass ran,
and the process' peak RSS before and after the build. The default table has
20 columns: 12 float features (normal, lognormal, uniform; 1 % missing), 3
integer counts, 3 categoricals (5, 40 and 1,000 distinct values), 1 boolean
and the label (a string class); ``--text`` adds a free-text column (inferred
as text: a second pass counts its vocabulary). The file is generated in
chunks, so generation does not raise the peak RSS the build is measured by.

Run:
    python benchmarks/baseline_build.py                        # 200,000 rows, CSV
    python benchmarks/baseline_build.py --rows 1000000         # memory stays flat as rows grow
    python benchmarks/baseline_build.py --format parquet --text
    python benchmarks/baseline_build.py --value-cache-mb 0          # histograms from a second pass
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from driftline.baselines.build import build_baseline

CHUNK = 10_000
_WORDS = ("battery screen fast slow great poor price delivery late broken love hate camera sound "
          "support refund size colour quality cheap works again never always day week").split()


def _chunks(rows: int, text: bool, seed: int = 0) -> Iterator[dict[str, list]]:
    rng = np.random.default_rng(seed)
    cities = [f"city-{i:04d}" for i in range(1_000)]
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        columns: dict[str, list] = {}
        for i in range(12):
            kind = i % 3
            x = rng.normal(10 * i, 1 + i, n) if kind == 0 else rng.lognormal(1, 0.5, n) if kind == 1 else rng.uniform(-1, 1, n)
            values = [float(v) for v in x]
            for j in np.flatnonzero(rng.random(n) < 0.01):
                values[j] = None
            columns[f"f{i:02d}"] = values
        for i in range(3):
            columns[f"count{i}"] = [int(v) for v in rng.poisson(3 + 10 * i, n)]
        columns["plan"] = [("free", "basic", "plus", "pro", "team")[v] for v in rng.integers(0, 5, n)]
        columns["region"] = [f"r{v:02d}" for v in rng.integers(0, 40, n)]
        columns["city"] = [cities[v] for v in rng.zipf(1.3, n) % 1_000]
        columns["active"] = [bool(v) for v in rng.random(n) < 0.3]
        columns["label"] = [("churn", "stay")[int(v)] for v in (rng.random(n) < 0.8)]
        if text:
            columns["review"] = [" ".join(rng.choice(_WORDS, k)) for k in rng.integers(3, 12, n)]
        yield columns


def write(path: Path, fmt: str, rows: int, text: bool) -> None:
    """Generate the training file, ``CHUNK`` rows at a time."""
    if fmt == "csv":
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            header = False
            for columns in _chunks(rows, text):
                if not header:
                    out.writerow(columns)
                    header = True
                out.writerows([["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row]
                               for row in zip(*columns.values())])
    elif fmt == "jsonl":
        with path.open("w") as f:
            for columns in _chunks(rows, text):
                names = list(columns)
                f.writelines(json.dumps(dict(zip(names, row))) + "\n" for row in zip(*columns.values()))
    elif fmt == "avro":
        import fastavro

        def avro_type(name: str) -> object:
            if name.startswith("f"):
                return ["null", "double"]
            return "long" if name.startswith("count") else "boolean" if name == "active" else "string"

        first = next(_chunks(1, text))
        schema = fastavro.parse_schema({"type": "record", "name": "Row", "fields": [
            {"name": name, "type": avro_type(name)} for name in first]})
        with path.open("wb") as f:
            writer = fastavro.write.Writer(f, schema)
            for columns in _chunks(rows, text):
                names = list(columns)
                for row in zip(*columns.values()):
                    writer.write(dict(zip(names, row)))
            writer.flush()
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        for columns in _chunks(rows, text):
            table = pa.table(columns)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
    else:
        raise SystemExit(f"unknown format {fmt}")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--format", default="csv", choices=("csv", "jsonl", "avro", "parquet"))
    parser.add_argument("--text", action="store_true", help="add a free-text column")
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows per chunk (default: build_baseline's)")
    parser.add_argument("--runs", type=int, default=1, help="builds to time; the best is reported")
    parser.add_argument("--value-cache-mb", type=float, default=256,
                        help="build_baseline's value_cache_mb: 0 forces the second pass over the file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="driftline-baseline-bench-") as tmp:
        path = Path(tmp) / f"train.{args.format}"
        t0 = time.perf_counter()
        write(path, args.format, args.rows, args.text)
        size = path.stat().st_size
        print(f"generated {args.rows:,} rows, {size / 1e6:.1f} MB of {args.format} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        rss_before = _peak_rss_mb()
        passes = {"n": 1}

        def progress(rows: int, done: int, total: int) -> None:
            passes["n"] = max(passes["n"], round(total / size))

        best, best_cpu = float("inf"), float("inf")
        kwargs: dict = {"value_cache_mb": args.value_cache_mb}
        if args.chunk_rows:
            kwargs["chunk_rows"] = args.chunk_rows
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            baseline = build_baseline(path, "bench", "1", label_column="label", progress=progress, **kwargs)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        types: dict[str, int] = {}
        for s in baseline.schema.values():
            types[s.type] = types.get(s.type, 0) + 1
        print(f"format={args.format} rows={args.rows:,} columns={len(baseline.schema) + 1} "
              f"({', '.join(f'{n} {t}' for t, n in sorted(types.items()))}, 1 label) passes={passes['n']}")
        print(f"build: {best:.2f} s wall, {best_cpu:.2f} s CPU  {args.rows / best:,.0f} rows/s "
              f"({args.rows / best_cpu:,.0f} per CPU second)  {size / 1e6 / best:.1f} MB/s")
        print(f"peak RSS: {rss_before:.0f} MB before the build, {_peak_rss_mb():.0f} MB after")


if __name__ == "__main__":
    main()
