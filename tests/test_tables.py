"""The table registry: its checks name the table and the problem, its entries are sane, and the
table reference (docs/tables.md) documents exactly what it declares."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from grids import tables

ROOT = Path(__file__).resolve().parents[1]


def eval_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [["results/models/jpeg/model.pth", "jpeg", "heldout", "jpeg", "img0", 30.5, 0.9, 28.0, 2.5]],
        columns=tables.columns("eval"),
    )


def test_a_conforming_frame_passes_and_is_written(tmp_path):
    frame = eval_frame()
    tables.check(frame, "eval")
    tables.write(frame, "eval", tmp_path / "eval.parquet")
    back = pd.read_parquet(tmp_path / "eval.parquet")
    pd.testing.assert_frame_equal(back, frame)
    tables.check(back, "eval")  # as read back, too


def test_missing_column_is_named():
    with pytest.raises(
        tables.TableError, match=r"table eval \(results/eval/\{group\}.parquet\): missing column\(s\) ssim"
    ):
        tables.check(eval_frame().drop(columns="ssim"), "eval")


def test_extra_column_is_named():
    with pytest.raises(tables.TableError, match=r"table eval .*: extra column\(s\) lpips"):
        tables.check(eval_frame().assign(lpips=0.1), "eval")


def test_wrong_dtype_is_named():
    frame = eval_frame().assign(psnr=lambda f: f.psnr.astype(str))
    with pytest.raises(tables.TableError, match=r"table eval .*: column psnr is \w+, expected float64"):
        tables.check(frame, "eval")
    manifest = pd.DataFrame(
        [["a", "s", "c", "jpeg", "{}", None, "p", "h"]], columns=tables.columns("degraded_manifest")
    )
    with pytest.raises(tables.TableError, match=r"column seed is float64, expected int64"):  # an int column with NaN
        tables.check(manifest.astype({"seed": "float64"}), "degraded_manifest")


def test_every_problem_is_reported_at_once():
    frame = eval_frame().drop(columns="image").assign(psnr="high", extra=1)
    with pytest.raises(tables.TableError) as error:
        tables.check(frame, "eval")
    message = str(error.value)
    assert "missing column(s) image" in message and "extra column(s) extra" in message
    assert "column psnr is" in message


def test_column_order_is_part_of_the_contract():
    frame = eval_frame()
    with pytest.raises(tables.TableError, match="columns in the order ssim, psnr"):
        tables.check(frame[["ssim", "psnr", *frame.columns[:-4], *frame.columns[-2:]]], "eval")


def test_text_columns_of_python_strings_and_empty_frames_pass():
    frame = eval_frame()
    for column in ("model", "trained_on", "test_set", "degradation", "image"):
        frame[column] = frame[column].astype(object)  # how pandas 2 holds text
    tables.check(frame, "eval")
    tables.check(pd.DataFrame([], columns=tables.columns("train_log")), "train_log")  # no rows: no types to infer
    bad = eval_frame().astype({"model": object})
    bad.loc[0, "model"] = 3
    with pytest.raises(tables.TableError, match="column model is object, expected str"):
        tables.check(bad, "eval")


def test_pattern_columns_expand_per_value():
    names = tables.columns("table1", baseline=["rrdb", "swinir"])
    assert names[3:9] == ["psnr_input", "psnr_upper", "psnr_mixall", "psnr_rrdb", "psnr_swinir", "psnr_grids"]
    assert names[17:21] == ["gain_rrdb", "gain_swinir", "harmed_rrdb", "harmed_swinir"]
    assert "psnr_{baseline}" not in tables.columns("table1") and len(tables.columns("table1")) == len(names) - 6
    gains = [5.0, 0, "learned", 4.0, 1, "learned"]
    row = ["heldout", "jpeg", "jpeg", 25.0, 30.0, 29.0, 28.0, 27.0, 30.0, 0.0, 1.0, *gains, 3.0, 2.0, 0, 0, *gains[:3]]
    tables.check(pd.DataFrame([row], columns=names), "table1")
    no_baseline = row[:6] + row[8:17] + row[21:]
    tables.check(pd.DataFrame([no_baseline], columns=tables.columns("table1")), "table1")
    wrong = pd.DataFrame([row], columns=names).assign(psnr_rrdb="x")
    with pytest.raises(tables.TableError, match="column psnr_rrdb is"):
        tables.check(wrong, "table1")


def test_unknown_table_names_the_registered_ones():
    with pytest.raises(KeyError, match="no table 'nope' in grids.tables .*clean_manifest"):
        tables.check(eval_frame(), "nope")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("results/clean/manifest.parquet", "clean_manifest"),
        ("results/test/heldout/clean/manifest.parquet", "clean_manifest"),
        ("results/test/heldout/degraded/jpeg/manifest.parquet", "degraded_manifest"),
        ("results/similarity/ggd.parquet", "similarity_ggd"),
        ("results/similarity/ggd/clean.parquet", "similarity_ggd"),
        ("results/eval/gaussian_noise+jpeg.parquet", "eval"),
        ("results/upper_bounds/evaluation.parquet", "upper_bounds_evaluation"),
        ("results/grouping/rounds/3.parquet", "grouping_round"),
        ("results/final/table1.parquet", "table1"),
    ],
)
def test_table_for_finds_the_table_of_a_path(path, name):
    assert tables.table_for(path) == name


def test_table_for_refuses_an_unregistered_path():
    for path in ("results/similarity/other.parquet", "results/eval/a/b.parquet", "elsewhere/manifest.parquet"):
        with pytest.raises(KeyError, match="no registered table"):
            tables.table_for(path)


def test_registry_is_sane():
    paths = [p for spec in tables.TABLES.values() for p in spec.paths]
    assert len(paths) == len(set(paths))
    for name, spec in tables.TABLES.items():
        assert re.fullmatch(r"[a-z0-9_]+", name)
        assert spec.paths and spec.meaning and spec.columns
        assert all(p.startswith("results/") and p.endswith(".parquet") for p in spec.paths), name
        names = [c.name for c in spec.columns]
        assert len(names) == len(set(names)), name
        for column in spec.columns:
            assert column.dtype in tables.DTYPES, (name, column)
            assert column.meaning and "|" not in column.meaning, (name, column)  # one markdown table cell
        for path in spec.paths:  # a concrete instance of every pattern maps back to its table
            assert tables.table_for(re.sub(r"\{\w+\}", "x", path)) == name


def test_table_reference_is_the_registry():
    reference = (ROOT / "docs" / "tables.md").read_text()
    assert reference.count(tables.START) == reference.count(tables.END) == 1
    assert tables.marked_section(reference) == tables.markdown(), (
        "regenerate: python -m grids.tables --update docs/tables.md"
    )
    for name in tables.TABLES:
        assert f"### `{name}`" in reference
    readme = (ROOT / "README.md").read_text()
    assert "](docs/tables.md)" in readme and tables.START not in readme  # linked, not copied


def test_update_rewrites_only_the_marked_section(tmp_path, capsys):
    path = tmp_path / "tables.md"
    path.write_text(f"# Title\n\nbefore\n{tables.START}\nold\n{tables.END}\nafter\n")
    assert tables.main(["--update", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{tables.END}\nafter\n")
    assert tables.marked_section(text) == tables.markdown()
    assert not tables.update_doc(path)  # already up to date
    assert "updated" in capsys.readouterr().out
