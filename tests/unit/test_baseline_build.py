"""build_baseline: a training file in, schema and reference statistics out, checked against numpy."""

from __future__ import annotations

import copy
import csv
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from scipy import stats as scipy_stats

from driftline.baselines.build import build_baseline
from driftline.baselines.model import (
    Baseline,
    BaselineError,
    BooleanStats,
    CategoricalStats,
    NumericStats,
    TextStats,
)
from driftline.baselines.profile import (
    QUANTILES,
    ColumnProfile,
    FrequentValues,
    NumericSummary,
    ProfileOptions,
    Reservoir,
    tokenize,
    widened_range,
)
from driftline.baselines.readers import TrainingFile, read_rows

try:
    import pyarrow  # noqa: F401

    HAVE_PYARROW = True
except ImportError:
    HAVE_PYARROW = False

needs_pyarrow = pytest.mark.skipif(not HAVE_PYARROW, reason="pyarrow is not installed: Parquet is optional (pip install pyarrow)")
FORMATS = ["csv", "jsonl", "avro", pytest.param("parquet", marks=needs_pyarrow)]
WORDS = "battery screen fast slow great poor price delivery late broken love camera sound support refund".split()


# -- writing the same rows in every format ----------------------------------------------------------


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_rows(path: Path, rows: list[dict[str, Any]], avro_types: dict[str, str] | None = None) -> Path:
    """Write ``rows`` in the format of ``path``'s extension (all rows have the same keys)."""
    names = list(rows[0])
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(names)
            out.writerows([_csv_field(row[n]) for n in names] for row in rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif fmt == "avro":
        import fastavro

        types = avro_types or {}

        def avro_type(name: str) -> str:
            if name in types:
                return types[name]
            kinds = {type(row[name]) for row in rows if row[name] is not None}
            return {bool: "boolean", int: "long", float: "double", str: "string"}[kinds.pop()] if len(kinds) == 1 else "double"

        schema = {"type": "record", "name": "Row",
                  "fields": [{"name": n, "type": ["null", avro_type(n)]} for n in names]}
        with path.open("wb") as f:
            fastavro.writer(f, fastavro.parse_schema(schema), rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=250)
    else:
        raise ValueError(fmt)
    return path


def mixed_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Rows with a numeric, integer, categorical, boolean and text feature, a label and a score."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append({
            "amount": None if i % 17 == 3 else float(np.round(rng.lognormal(3, 0.7), 4)),
            "items": int(rng.poisson(4)),
            "channel": None if i % 23 == 5 else str(rng.choice(["web", "app", "store", "phone"])),
            "vip": bool(rng.random() < 0.2),
            "review": " ".join(rng.choice(WORDS, int(rng.integers(3, 9)))) + f" order{i}",
            "churned": str(rng.choice(["yes", "no"], p=[0.3, 0.7])),
            "score": float(np.round(rng.random(), 6)),
        })
    return rows


def _without_provenance(b: Baseline) -> dict[str, Any]:
    doc = b.to_json()
    doc.pop("created")
    doc.pop("source")
    return doc


def _split_moments(doc: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """The document without numeric means and stds, and those, in a fixed order."""
    doc = copy.deepcopy(doc)
    moments = []
    stats = dict(doc["statistics"]["features"])
    stats.update({f"~{k}": v for k, v in doc["statistics"].items() if k != "features" and v})
    for _, s in sorted(stats.items()):
        if s["type"] == "numeric":
            moments += [s.pop("mean"), s.pop("std")]
    return doc, moments


# -- statistics against numpy -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def numeric_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    n = 20_000
    data = {
        "normal": rng.normal(100.0, 15.0, n),
        "skewed": rng.lognormal(0.0, 1.2, n),
        "count": rng.poisson(7, n).astype(float),
        "shifted": rng.normal(1e6, 0.5, n),
    }
    data["normal"][rng.random(n) < 0.05] = np.nan  # 5 % missing
    return data


@pytest.fixture(scope="module")
def numeric_file(tmp_path_factory: pytest.TempPathFactory, numeric_data: dict[str, np.ndarray]) -> Path:
    path = tmp_path_factory.mktemp("numeric") / "train.csv"
    names = list(numeric_data)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(names)
        for row in zip(*numeric_data.values()):
            out.writerow(["" if math.isnan(v) else repr(float(v)) for v in row])
    return path


@pytest.mark.parametrize("value_cache_mb", [256, 0], ids=["one-pass", "two-pass"])
def test_numeric_statistics_equal_numpy_references(numeric_file: Path, numeric_data: dict[str, np.ndarray],
                                                   value_cache_mb: float) -> None:
    b = build_baseline(numeric_file, "m", "1", value_cache_mb=value_cache_mb)
    assert b.rows == 20_000
    eps = kll_doubles_sketch.get_normalized_rank_error(ProfileOptions().quantile_k, False)
    for name, raw in numeric_data.items():
        x = raw[~np.isnan(raw)]
        s = b.statistics[name]
        assert isinstance(s, NumericStats)
        assert (s.count, s.missing) == (x.size, raw.size - x.size)
        assert s.mean == pytest.approx(np.mean(x), rel=1e-9)
        assert s.std == pytest.approx(np.std(x, ddof=0), rel=1e-9)
        assert (s.min, s.max) == (x.min(), x.max())
        edges = np.histogram_bin_edges(x, bins=20)
        assert s.histogram.edges == pytest.approx(edges.tolist(), rel=1e-15)
        assert list(s.histogram.counts) == np.histogram(x, bins=np.asarray(s.histogram.edges))[0].tolist()
        ordered = np.sort(x)
        assert list(s.quantiles) == [str(q) for q in QUANTILES]
        for q in QUANTILES:
            value = s.quantiles[str(q)]
            below = np.searchsorted(ordered, value, "left") / x.size  # share of values < the quantile
            at_most = np.searchsorted(ordered, value, "right") / x.size  # share <= the quantile
            assert below - eps <= q <= at_most + eps, (name, q, value, np.quantile(x, q))
        assert len(s.sample) == 2_000 and np.isin(s.sample, x).all()
    assert b.schema["count"].integral and not b.schema["normal"].integral
    assert not b.schema["normal"].required and b.schema["skewed"].required


def test_quantiles_are_exact_while_the_sketch_holds_every_value() -> None:
    x = np.random.default_rng(3).normal(size=900)
    s = NumericSummary().update_many(x[:400]).update_many(x[400:])
    assert s.rank_error == 0.0
    for q, value in s.quantiles().items():
        assert value == np.quantile(x, float(q), method="inverted_cdf")


def test_categorical_boolean_and_missing_counts_are_exact(tmp_path: Path) -> None:
    rows = mixed_rows(3_000)
    b = build_baseline(write_rows(tmp_path / "t.jsonl", rows), "m", "1", chunk_rows=500)
    channel = b.statistics["channel"]
    assert isinstance(channel, CategoricalStats)
    expected = Counter(r["channel"] for r in rows if r["channel"] is not None)
    assert dict(channel.frequencies) == dict(expected)
    assert channel.missing == sum(r["channel"] is None for r in rows) and channel.count == sum(expected.values())
    vip = b.statistics["vip"]
    assert isinstance(vip, BooleanStats)
    assert (vip.count, vip.missing, vip.true_count) == (3_000, 0, sum(r["vip"] for r in rows))
    assert b.statistics["amount"].missing == sum(r["amount"] is None for r in rows)


def test_text_statistics_count_lower_cased_word_tokens(tmp_path: Path) -> None:
    texts = ["Late delivery, LATE again!", "great camera", None, "", "late-night support: great"]
    path = write_rows(tmp_path / "t.jsonl", [{"note": t} for t in texts])
    b = build_baseline(path, "m", "1", text_columns=["note"], options=ProfileOptions(vocabulary_size=3))
    s = b.statistics["note"]
    assert isinstance(s, TextStats)
    words = Counter(w for t in texts if t for w in tokenize(t))
    assert (s.count, s.missing, s.tokens) == (3, 2, sum(words.values()))
    assert dict(s.vocabulary) == {"late": 3, "great": 2, "again": 1}  # the 3 most frequent, ties by word
    assert b.schema["note"].type == "text" and not b.schema["note"].required


def test_frequencies_beyond_capacity_are_approximate_but_find_the_frequent_values() -> None:
    f = FrequentValues(keep=3, capacity=50)
    values = [f"rare{i}" for i in range(5_000)] + ["a"] * 900 + ["b"] * 600 + ["c"] * 300
    f.update_many(np.random.default_rng(0).permutation(values).tolist())
    assert not f.exact and f.distinct is None and f.total == len(values)
    top = f.top()
    assert list(top) == ["a", "b", "c"]
    for value, true in (("a", 900), ("b", 600), ("c", 300)):
        assert true <= top[value] <= true + f.error_bound


# -- formats, chunks and passes ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_rows_gives_the_same_rows_in_every_format(tmp_path: Path, fmt: str) -> None:
    rows = [{"x": 1.5, "n": 3, "s": "a", "b": True}, {"x": None, "n": 4, "s": "b", "b": False}]
    read = list(read_rows(write_rows(tmp_path / f"t.{fmt}", rows)))
    if fmt == "csv":  # CSV fields are text, missing ones None
        assert read == [{"x": "1.5", "n": "3", "s": "a", "b": "true"}, {"x": None, "n": "4", "s": "b", "b": "false"}]
    elif fmt == "jsonl":  # a JSON line keeps its non-missing values
        assert read == [rows[0], {"n": 4, "s": "b", "b": False}]
    else:
        assert read == rows


def test_every_format_gives_the_same_baseline(tmp_path: Path) -> None:
    rows = mixed_rows(800)  # at most quantile_k values per column: quantiles are exact, so comparable
    documents = {}
    for fmt in ("csv", "jsonl", "avro", "parquet"):
        if fmt == "parquet" and not HAVE_PYARROW:
            continue
        path = write_rows(tmp_path / f"train.{fmt}", rows)
        b = build_baseline(path, "churn", "7", label_column="churned", prediction_column="score",
                           text_columns=["review"], chunk_rows=300)
        assert b.source["format"] == fmt and b.source["file"] == path.name
        documents[fmt] = _without_provenance(b)
    reference = documents.pop("csv")
    assert reference["schema"]["features"]["items"]["integral"] is True
    for fmt, doc in documents.items():
        assert doc == reference, fmt


@pytest.mark.parametrize("value_cache_mb", [256, 0], ids=["one-pass", "two-pass"])
def test_a_file_read_in_many_small_chunks_gives_the_same_baseline(tmp_path: Path, value_cache_mb: float) -> None:
    rows = mixed_rows(900)
    path = write_rows(tmp_path / "train.csv", rows)
    options = ProfileOptions(sample_size=50)  # the reservoir replaces values: its batching matters
    kwargs = {"label_column": "churned", "prediction_column": "score", "options": options,
              "value_cache_mb": value_cache_mb}
    whole, whole_moments = _split_moments(_without_provenance(build_baseline(path, "m", "1", chunk_rows=100_000,
                                                                             **kwargs)))
    chunked, chunked_moments = _split_moments(_without_provenance(build_baseline(path, "m", "1", chunk_rows=7,
                                                                                 **kwargs)))
    assert chunked == whole  # 129 chunks of 7 rows
    assert chunked_moments == pytest.approx(whole_moments, rel=1e-12)  # batch merging moves the last bits only


def test_progress_covers_every_byte_of_every_pass(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.csv", mixed_rows(8_000))  # more values than the sample holds
    size = path.stat().st_size
    for cache, passes in ((256, 1), (0, 2)):  # without the value cache, histograms need a second pass
        calls: list[tuple[int, int, int]] = []
        build_baseline(path, "m", "1", chunk_rows=500, value_cache_mb=cache, progress=lambda *p: calls.append(p))
        assert calls[-1] == (passes * 8_000, passes * size, passes * size)
        done = [c[1] for c in calls]
        assert done == sorted(done) and calls[0][2] == size and len(calls) > 16 * passes


def test_inferred_text_has_the_statistics_of_named_text(tmp_path: Path) -> None:
    rows = mixed_rows(1_000)
    rows[3]["review"] = None
    path = write_rows(tmp_path / "t.jsonl", rows)
    options = ProfileOptions(vocabulary_size=200)  # counted exactly up to 2,000 distinct words (~1,015 here)
    inferred = build_baseline(path, "m", "1", options=options)
    named = build_baseline(path, "m", "1", text_columns=["review"], options=options)
    assert inferred.schema["review"].type == "text"
    assert inferred.statistics["review"] == named.statistics["review"]
    words = Counter(w for r in rows if r["review"] for w in tokenize(r["review"]))
    assert dict(named.statistics["review"].vocabulary) == dict(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:200])


# -- schema inference -------------------------------------------------------------------------------


def test_schema_infers_types_requirement_domain_and_range(tmp_path: Path) -> None:
    rows = mixed_rows(1_000)
    b = build_baseline(write_rows(tmp_path / "t.csv", rows), "m", "1", label_column="churned",
                       prediction_column="score")
    schema = b.schema
    assert {n: s.type for n, s in schema.items()} == {
        "amount": "numeric", "items": "numeric", "channel": "categorical", "vip": "boolean", "review": "text"}
    assert {n for n, s in schema.items() if s.required} == {"items", "vip", "review"}
    assert schema["channel"].domain == ["app", "phone", "store", "web"]
    amounts = [r["amount"] for r in rows if r["amount"] is not None]
    low, high = min(amounts), max(amounts)
    assert (schema["amount"].min, schema["amount"].max) == pytest.approx((max(0.0, low - 0.1 * (high - low)),
                                                                          high + 0.1 * (high - low)))
    assert schema["items"].integral and not schema["amount"].integral
    assert "churned" not in schema and "score" not in schema and "churned" not in b.statistics
    assert isinstance(b.label, CategoricalStats) and dict(b.label.frequencies) == dict(Counter(r["churned"] for r in rows))
    assert isinstance(b.prediction, NumericStats) and b.prediction.count == 1_000


def test_range_margin_widens_by_a_share_of_the_range_without_crossing_zero() -> None:
    assert widened_range(-10.0, 30.0, 0.1) == (-14.0, 34.0)
    assert widened_range(2.0, 12.0, 0.5) == (0.0, 17.0)
    assert widened_range(5.0, 5.0, 0.1) == (5.0, 5.0)
    column = ColumnProfile("t", options=ProfileOptions(range_margin=0.25)).update_many([-1.0, 3.0])
    schema, _ = column.result()
    assert (schema.min, schema.max) == (-2.0, 4.0)


def test_domain_is_left_out_above_max_domain(tmp_path: Path) -> None:
    rows = [{"city": f"c{i % 30}", "code": f"k{i % 8}"} for i in range(300)]
    b = build_baseline(write_rows(tmp_path / "t.jsonl", rows), "m", "1", options=ProfileOptions(max_domain=10))
    assert b.schema["city"].domain is None and len(b.statistics["city"].frequencies) == 30
    assert b.schema["code"].domain == [f"k{i}" for i in range(8)]


def test_text_is_told_from_categories_by_words_and_distinct_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = [{"comment": " ".join(rng.choice(WORDS, 4)) + f" #{i}",  # many distinct, ~5 words: text
             "segment": str(rng.choice(["small business", "large enterprise account", "public sector body"])),
             "tag": f"t{i}"}  # many distinct, 1 word: categorical
            for i in range(400)]
    b = build_baseline(write_rows(tmp_path / "t.jsonl", rows), "m", "1")
    assert {n: s.type for n, s in b.schema.items()} == {"comment": "text", "segment": "categorical", "tag": "categorical"}
    assert b.schema["tag"].domain is None


def test_overrides_fix_types_and_exclude_columns(tmp_path: Path) -> None:
    rows = [{"id": i, "zip": f"{(i * 7919) % 100:05d}", "plan": ["a", "b"][i % 2], "level": i % 3,
             "note": f"short {i}"} for i in range(50)]
    path = write_rows(tmp_path / "t.csv", rows)
    b = build_baseline(path, "m", "1", categorical_columns=["zip", "level"], text_columns=["note"],
                       exclude_columns=["id"])
    assert set(b.schema) == {"zip", "plan", "level", "note"}
    assert b.schema["zip"].type == "categorical" and "00000" in b.schema["zip"].domain  # CSV text as written
    assert b.schema["level"].domain == ["0", "1", "2"]
    assert b.schema["note"].type == "text"
    b = build_baseline(path, "m", "1", label_column="level", categorical_columns=["level"])
    assert isinstance(b.label, CategoricalStats) and dict(b.label.frequencies) == {"0": 17, "1": 17, "2": 16}


def test_a_mixed_column_takes_its_majority_type(tmp_path: Path) -> None:
    rows = [{"mostly_numbers": "n/a" if i % 10 == 0 else i * 1.5,
             "mostly_strings": 7 if i % 10 == 0 else ["x", "y"][i % 2],
             "mostly_booleans": "maybe" if i % 10 == 0 else i % 3 == 0} for i in range(100)]
    for path in (write_rows(tmp_path / "t.jsonl", rows), write_rows(tmp_path / "t.csv", rows)):
        b = build_baseline(path, "m", "1")
        numbers = b.statistics["mostly_numbers"]
        assert b.schema["mostly_numbers"].type == "numeric"
        assert (numbers.count, numbers.missing) == (90, 10) and not b.schema["mostly_numbers"].required
        strings = b.statistics["mostly_strings"]
        assert b.schema["mostly_strings"].type == "categorical" and b.schema["mostly_strings"].required
        assert dict(strings.frequencies) == {"7": 10, "x": 40, "y": 50}
        assert b.schema["mostly_booleans"].type == "boolean" and b.statistics["mostly_booleans"].missing == 10


def test_columns_absent_from_some_rows_are_missing_there(tmp_path: Path) -> None:
    rows = [{"a": 1.0}] * 5 + [{"a": 2.0, "late": "x"}] * 3 + [{"a": 3.0}] * 2
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = build_baseline(path, "m", "1", chunk_rows=4)
    assert (b.statistics["late"].count, b.statistics["late"].missing) == (3, 7)
    assert not b.schema["late"].required and b.schema["a"].required


def test_an_edited_schema_round_trips(tmp_path: Path) -> None:
    b = build_baseline(write_rows(tmp_path / "t.csv", mixed_rows(300)), "m", "1", label_column="churned")
    doc = json.loads(b.dumps())
    features = doc["schema"]["features"]
    features["amount"]["max"] = 10_000.0
    features["channel"]["domain"] = sorted(features["channel"]["domain"] + ["kiosk"])
    features["items"]["required"] = False
    edited = Baseline.from_json(json.dumps(doc))
    assert edited.schema["amount"].accepts_number(9_999.0)
    assert edited.schema["channel"].accepts_category("kiosk") and not edited.schema["items"].required
    assert json.loads(edited.dumps()) == doc
    assert Baseline.from_json(edited.dumps()) == edited


# -- samples ----------------------------------------------------------------------------------------


def test_reservoir_sample_is_uniform_and_deterministic() -> None:
    n = 100_000
    r = Reservoir(size=2_000, seed=11).update_many(np.arange(n, dtype=float))
    sample = np.array(r.sample)
    assert len(sample) == 2_000 and len(set(sample)) == 2_000
    deciles = np.bincount((sample * 10 // n).astype(int), minlength=10)
    assert scipy_stats.chisquare(deciles).pvalue > 1e-3
    again = Reservoir(size=2_000, seed=11)
    for start in range(0, n, 999):
        again.update_many(np.arange(start, min(start + 999, n), dtype=float))
    assert again.sample == r.sample  # same seed, same sample, however batched
    assert Reservoir(size=2_000, seed=12).update_many(np.arange(n, dtype=float)).sample != r.sample
    # every position is equally likely to be kept: 400 seeds, 10 of 100 each
    kept = np.zeros(100)
    for seed in range(400):
        kept[np.array(Reservoir(size=10, seed=seed).update_many(np.arange(100.0)).sample, dtype=int)] += 1
    assert scipy_stats.chisquare(kept).pvalue > 1e-3


def test_numeric_sample_comes_from_the_column_and_is_seeded(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.csv", mixed_rows(2_000))
    options = ProfileOptions(sample_size=100)
    first = build_baseline(path, "m", "1", options=options)
    second = build_baseline(path, "m", "1", options=options, chunk_rows=33)
    other = build_baseline(path, "m", "1", options=ProfileOptions(sample_size=100, seed=1))
    assert first.statistics["amount"].sample == second.statistics["amount"].sample
    assert first.statistics["amount"].sample != other.statistics["amount"].sample
    assert len(first.statistics["amount"].sample) == 100


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "message"), [
    ("t.xlsx", b"whatever", "cannot tell the format of t.xlsx from its extension"),
    ("t.csv", b"", "t.csv: line 1: the file is empty"),
    ("t.csv", b"a,b\n", "t.csv has no rows"),
    ("t.csv", b"a,a\n1,2\n", "t.csv: line 1: the header needs distinct"),
    ("t.csv", b"a,b\n1,2\n3,4,5\n", "t.csv: line 3: 3 fields, but the header has 2"),
    ("t.csv", b"a,b\n1,2\n\xff\xfe,3\n", "t.csv: line 3: not UTF-8 text"),
    ("t.jsonl", b'{"a": 1}\n{"a": 2,\n', "t.jsonl: line 2: not valid JSON"),
    ("t.jsonl", b'{"a": 1}\n[1, 2]\n', "t.jsonl: line 2: a JSON line must be an object"),
    ("t.json", b'[{"a": 1},\n {"a": 2}]\n', "t.json: line 1: a JSON array, not JSON lines"),
    ("t.jsonl", b'{"a": 1}\n{"a": {"b": 2}}\n', "t.jsonl: row 2, column 'a': cannot profile a value of type dict"),
    ("t.avro", b"not avro at all", "t.avro: header: not an Avro container file"),
    pytest.param("t.parquet", b"not parquet", "t.parquet: footer: not a Parquet file", marks=needs_pyarrow),
])
def test_bad_files_give_a_clear_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BaselineError) as raised:
        build_baseline(path, "m", "1")
    assert message in str(raised.value)


def test_a_truncated_avro_file_names_the_row(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.avro", mixed_rows(500))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BaselineError, match=r"t\.avro: row \d+: cannot decode the Avro record"):
        build_baseline(path, "m", "1")


def test_columns_named_must_exist_and_not_conflict(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.csv", mixed_rows(10))
    with pytest.raises(BaselineError, match="t.csv has no column 'churn' "):
        build_baseline(path, "m", "1", label_column="churn")
    with pytest.raises(BaselineError, match="cannot be both categorical and text"):
        build_baseline(path, "m", "1", categorical_columns=["review"], text_columns=["review"])
    with pytest.raises(BaselineError, match="both the label and the prediction"):
        build_baseline(path, "m", "1", label_column="score", prediction_column="score")
    with pytest.raises(BaselineError, match="t.jsonl has no column 'idd' "):  # JSON lines: found after reading
        build_baseline(write_rows(tmp_path / "t.jsonl", mixed_rows(10)), "m", "1", exclude_columns=["idd"])
    with pytest.raises(BaselineError, match="cannot read .*missing.csv"):
        build_baseline(tmp_path / "missing.csv", "m", "1")


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if it were not installed
    with pytest.raises(BaselineError, match="reading Parquet needs pyarrow: pip install pyarrow"):
        build_baseline(path, "m", "1")


def test_csv_with_bom_crlf_quoted_newlines_and_missing_markers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes('\ufeffname,x,note\r\nana,1.5,"two\r\nlines"\r\nbo,NA,\r\nçé,,"a, b"\r\n'.encode())
    rows = list(read_rows(path))
    assert rows == [{"name": "ana", "x": "1.5", "note": "two\r\nlines"}, {"name": "bo", "x": None, "note": None},
                    {"name": "çé", "x": None, "note": "a, b"}]
    b = build_baseline(path, "m", "1")
    assert b.statistics["x"].count == 1 and b.schema["name"].domain == ["ana", "bo", "çé"]


def test_training_file_reports_bytes_and_digest(tmp_path: Path) -> None:
    import hashlib

    path = write_rows(tmp_path / "t.jsonl", mixed_rows(50))
    data = TrainingFile(path)
    assert sum(c.rows for c in data.chunks(rows=8)) == 50
    assert data.bytes_read == data.size == path.stat().st_size
    assert data.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
