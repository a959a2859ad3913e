"""Labelled data: label detection, union of label sets with an unknown mask, languages, one-line data errors."""

import numpy as np
import polars as pl
import pytest

from emocli.errors import InputError
from emocli.training.labelled import DataSpec, load_labelled


def write_subset(src, dst, rows=40):
    dst.parent.mkdir(parents=True, exist_ok=True)
    pl.read_csv(src).head(rows).write_csv(dst)
    return dst


def test_union_of_label_sets_masks_what_a_file_lacks(brighter, tmp_path):
    eng = write_subset(brighter / "train" / "eng.csv", tmp_path / "train" / "eng.csv")
    afr = write_subset(brighter / "train" / "afr.csv", tmp_path / "train" / "afr.csv", rows=300)
    data = load_labelled([str(eng), str(afr)])
    assert set(data.labels) == {"anger", "disgust", "fear", "joy", "sadness", "surprise"}
    assert data.labels[:5] == ("anger", "fear", "joy", "sadness", "surprise")  # eng's order, then new ones
    disgust, surprise = data.labels.index("disgust"), data.labels.index("surprise")
    is_eng = np.array([lang == "eng" for lang in data.languages])
    assert is_eng.sum() == 40 and (~is_eng).sum() == 300
    assert not data.mask[is_eng, disgust].any() and data.mask[~is_eng, disgust].all()
    assert not data.mask[~is_eng, surprise].any() and data.mask[is_eng, surprise].all()
    assert (data.targets[~data.mask] == 0).all()
    assert data.known()[disgust] == 300
    assert set(data.fingerprints) == {str(eng), str(afr)} and all(len(v) == 64 for v in data.fingerprints.values())


def test_language_column_wins_over_file_name(tmp_path):
    path = tmp_path / "deu.csv"
    pl.DataFrame({"id": [1, 2], "text": ["a", "b"], "language": ["fra", None], "joy": [1, 0]}).write_csv(path)
    data = load_labelled([str(path)])
    assert data.languages == ["fra", "deu"] and data.labels == ("joy",)


def test_parquet_explicit_labels_and_empty_texts(tmp_path):
    path = tmp_path / "posts.parquet"
    pl.DataFrame({"body": ["good", "", None, "bad", "  "], "joy": [1, 0, 1, 0, 1], "anger": [0, 0, 0, 1, 0],
                  "score": [3, 4, 5, 6, 7]}).write_parquet(path)
    data = load_labelled([str(path)], DataSpec(text_col="body", labels=("joy", "anger")))
    assert data.texts == ["good", "bad"] and data.skipped_texts == 3
    assert data.targets.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_drop_empty_labels(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,text,joy,fear\n1,hi,1,0\n2,yo,0,0\n")
    with pytest.raises(InputError, match="'fear' has no positive example"):
        load_labelled([str(path)])
    data = load_labelled([str(path)], DataSpec(drop_empty_labels=True))
    assert data.labels == ("joy",) and data.dropped_labels == ("fear",)


@pytest.mark.parametrize("content, message", [
    ("id,body,joy\n1,hi,1\n", "no text column 'text'"),
    ("id,text,joy\n1,hi,1\n2,yo,2\n", "row 2, column 'joy': label value '2' is not 0 or 1"),
    ("id,text,joy\n1,hi,0\n2,yo,0\n", "label column 'joy' has no positive example"),
    ("", "empty"),
    ("id,text,joy\n", "empty"),
])
def test_bad_data_is_one_line_and_nonzero_exit(cli, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = cli(["finetune", "--train", path, "--out", tmp_path / "m", "--quiet"])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in result.stderr and str(path) in lines[0]
    assert "Traceback" not in result.stderr and len([l for l in lines if l.startswith("error")]) == 1


def test_finetune_without_data_names_the_flag(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(["finetune"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--train FILE" in lines[0]


def test_fixed_label_set_masks_labels_no_file_has(brighter, tmp_path):
    afr = write_subset(brighter / "dev" / "afr.csv", tmp_path / "afr.csv", 30)
    data = load_labelled([str(afr)], labels=("anger", "fear", "joy", "sadness", "surprise"))
    assert data.labels[-1] == "surprise" and not data.mask[:, -1].any() and data.mask[:, :-1].all()
    with pytest.raises(InputError, match="no label columns found"):
        load_labelled([str(afr)], labels=("love", "trust"))
