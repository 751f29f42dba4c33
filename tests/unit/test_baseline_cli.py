"""``driftline baseline build`` and ``show``: the files they write and read, and how they fail."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftline.baselines.model import Baseline
from driftline.cli import app

runner = CliRunner()


@pytest.fixture
def training_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["customer_id", "tenure", "plan", "zip", "note", "churned", "score"])
        for i in range(120):
            out.writerow([f"c{i}", i % 40, ["basic", "pro"][i % 2], f"{i % 5:05d}", f"called about bill {i}",
                          ["no", "yes"][i % 3 == 0], round(i / 120, 3)])
    return path


def test_build_writes_the_baseline_under_the_default_name(training_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(training_csv.parent)
    result = runner.invoke(app, ["baseline", "build", str(training_csv), "--model", "churn", "--version", "7",
                                 "--exclude", "customer_id", "--label-column", "churned", "--prediction-column", "score",
                                 "--categorical-column", "zip", "--text-column", "note", "--quiet"])
    assert result.exit_code == 0, result.output
    written = training_csv.parent / "churn-7.baseline.json"
    baseline = Baseline.from_json(written.read_text())
    assert (baseline.model_name, baseline.model_version, baseline.rows) == ("churn", "7", 120)
    assert {n: s.type for n, s in baseline.schema.items()} == {
        "tenure": "numeric", "plan": "categorical", "zip": "categorical", "note": "text"}
    assert baseline.schema["zip"].domain == ["00000", "00001", "00002", "00003", "00004"]
    assert baseline.label is not None and dict(baseline.label.frequencies) == {"no": 80, "yes": 40}
    assert baseline.prediction is not None and baseline.prediction.type == "numeric"
    assert baseline.source["file"] == "train.csv" and len(baseline.source["sha256"]) == 64
    assert "wrote churn-7.baseline.json (4 features, label, prediction)" in result.stdout
    for name in ("tenure", "plan", "zip", "note", "label", "prediction"):
        assert name in result.stdout


def test_build_shows_progress_and_writes_where_asked(training_csv: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "b.json"
    target.parent.mkdir()
    result = runner.invoke(app, ["baseline", "build", str(training_csv), "-m", "churn", "--version", "7",
                                 "-o", str(target), "--max-domain", "1", "--bins", "4", "--sample-size", "10"])
    assert result.exit_code == 0, result.output
    assert re.search(r"profiling .* 120 rows", result.stderr)  # the progress bar, on stderr
    baseline = Baseline.from_json(target.read_text())
    assert baseline.schema["plan"].domain is None  # 2 values > --max-domain 1
    assert len(baseline.statistics["tenure"].histogram.counts) == 4
    assert len(baseline.statistics["tenure"].sample) == 10


def test_build_does_not_overwrite_without_force(training_csv: Path, tmp_path: Path) -> None:
    target = tmp_path / "b.json"
    target.write_text("my edits")
    args = ["baseline", "build", str(training_csv), "--model", "m", "--version", "1", "-o", str(target), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "exists" in result.stderr and "--force" in result.stderr
    assert target.read_text() == "my edits"
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert Baseline.from_json(target.read_text()).rows == 120


@pytest.mark.parametrize(("content", "extra", "message"), [
    ("a,b\n1,2\n3\n", [], "train.csv: line 3: 1 fields, but the header has 2"),
    ("a,b\n1,2\n", ["--label-column", "label"], "train.csv has no column 'label'"),
    ("a,b\n1,2\n", ["--format", "xlsx"], "unknown format 'xlsx'"),
])
def test_build_fails_with_the_reason(tmp_path: Path, content: str, extra: list[str], message: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(content)
    target = tmp_path / "b.json"
    result = runner.invoke(app, ["baseline", "build", str(path), "--model", "m", "--version", "1", "-o", str(target),
                                 "-q", *extra])
    assert result.exit_code == 1
    assert message in result.stderr
    assert not target.exists()


def test_show_accepts_an_edited_baseline(training_csv: Path, tmp_path: Path) -> None:
    target = tmp_path / "b.json"
    runner.invoke(app, ["baseline", "build", str(training_csv), "--model", "m", "--version", "1", "-o", str(target),
                        "-q", "--exclude", "customer_id"])
    doc = json.loads(target.read_text())
    doc["schema"]["features"]["tenure"]["max"] = 120.0
    doc["schema"]["features"]["plan"]["domain"].append("enterprise")
    target.write_text(json.dumps(doc, indent=2))
    result = runner.invoke(app, ["baseline", "show", str(target)])
    assert result.exit_code == 0, result.output
    assert "is a valid baseline (6 features)" in result.stdout
    assert "[0, 120] integers" in result.stdout
    assert "enterprise" in result.stdout


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["schema"]["features"]["tenure"].update(type="number"), "type must be one of"),
    (lambda d: d["schema"]["features"]["tenure"].update(min=50.0, max=1.0), "min 50.0 is above max 1.0"),
    (lambda d: d["schema"]["features"]["plan"].update(domian=["x"]), "unknown fields: domian"),
    (lambda d: d["schema"]["features"]["plan"].update(required="yes"), "required must be true or false"),
    (lambda d: d.update(format="other/1"), "unknown baseline format"),
])
def test_show_rejects_a_bad_edit_with_the_reason(training_csv: Path, tmp_path: Path, edit, message: str) -> None:
    target = tmp_path / "b.json"
    runner.invoke(app, ["baseline", "build", str(training_csv), "--model", "m", "--version", "1", "-o", str(target),
                        "-q"])
    doc = json.loads(target.read_text())
    edit(doc)
    target.write_text(json.dumps(doc))
    result = runner.invoke(app, ["baseline", "show", str(target)])
    assert result.exit_code == 1
    assert message in result.stderr


def test_show_rejects_files_that_are_not_baselines(tmp_path: Path) -> None:
    broken = tmp_path / "b.json"
    broken.write_text('{"format": "driftline.baseline/1", ')
    result = runner.invoke(app, ["baseline", "show", str(broken)])
    assert result.exit_code == 1 and "baseline is not valid JSON" in result.stderr
    result = runner.invoke(app, ["baseline", "show", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_baseline_commands_are_registered() -> None:
    result = runner.invoke(app, ["baseline", "--help"])
    assert result.exit_code == 0
    assert "build" in result.stdout and "show" in result.stdout
