"""Reading a run folder (core.run_files): a torn or missing file is an absence, never an exception."""

from __future__ import annotations

import json

from core.run_files import metrics_rows


def test_metrics_rows_skip_a_torn_line_and_rows_without_an_integer_step(tmp_path):
    rows = [{"split": "train", "step": 1, "time": 0.5}, {"split": "valid", "step": 2, "bits": 7.5}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(
        text + '{"step": "3"}\n[1, 2]\n\n' + json.dumps({"split": "train", "step": 4})[:-3])  # killed mid-write
    assert metrics_rows(tmp_path) == rows


def test_metrics_rows_of_a_run_that_has_logged_nothing_are_empty(tmp_path):
    assert metrics_rows(tmp_path) == []
    (tmp_path / "metrics.jsonl").write_bytes(b"\xff\xfe")  # not text
    assert metrics_rows(tmp_path) == []
