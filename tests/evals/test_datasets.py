"""Dataset files: shipped sets, the user's formats, and every kind of bad input."""

from __future__ import annotations

import json

import pytest
from mind4_evals import datasets, synthetic
from mind4_evals.basic import resolve_text
from mind4_evals.datasets import load_abcd, load_aime, load_gpqa, load_text, shipped_path
from mind4_evals.errors import DatasetError

HEADER = (
    "Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
)


def test_shipped_sets_load_cleanly():
    for kind, size in (("abcd", 200), ("gpqa", 100), ("aime", 200)):
        ds = datasets.load(kind)
        assert len(ds) == size and ds.malformed == ()
        assert len({r.id for r in ds.rows}) == size
    assert load_text(shipped_path("text")).count("\n") == synthetic.SIZES["text"]


def test_shipped_files_are_exactly_what_the_generator_writes(tmp_path):
    for name, content in synthetic.render_files().items():
        assert (shipped_path("text").parent / name).read_text(encoding="utf-8") == content, name


def test_shipped_answers_are_right():
    from evals_fakes import solve

    for row in datasets.load("abcd").rows:
        f = row.fields
        assert f["choices"]["ABCD".index(f["answer"])] == str(solve(f["question"]))
    for row in datasets.load("gpqa").rows:
        assert row.fields["Correct Answer"] == str(solve(row.fields["Question"]))
    for row in datasets.load("aime").rows:
        assert row.fields["answer"] == solve(row.fields["problem"])


def test_training_examples_never_contain_an_eval_question():
    held_out = synthetic.eval_questions()
    examples = list(synthetic.training_examples(2000, seed=1))
    assert len(examples) == 2000
    for messages, reply in examples:
        question = messages[0]["content"].split("\n\n")[0]
        assert question not in held_out
        assert reply.startswith(("Answer: ", "\\boxed{"))
    assert not set(synthetic.training_text(500).splitlines()) & set(synthetic.text_lines())


@pytest.mark.parametrize(
    ("loader", "kind"),
    [(load_gpqa, "gpqa"), (load_aime, "aime"), (load_abcd, "abcd"), (load_text, "text")],
)
def test_missing_file_names_file_and_format(tmp_path, loader, kind):
    missing = tmp_path / "nope.data"
    with pytest.raises(DatasetError) as err:
        loader(missing)
    msg = str(err.value)
    assert str(missing) in msg and "does not exist" in msg
    assert datasets.FORMATS[kind] in msg


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DatasetError, match="is a directory"):
        load_aime(tmp_path)


def test_gpqa_malformed_rows_are_reported_with_lines(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text(
        HEADER
        + "r1,What is 1 + 1?,2,3,4,5\n"
        + "r2,too few fields,1,2\n"  # line 3
        + 'r3,"A question\nover two lines",7,8,9,10\n'  # lines 4-5
        + "r4,,1,2,3,4\n"  # line 6: empty question
        + "\n"  # blank line 7 is ignored
        + "r5,dup options,1,1,2,3\n"  # line 8
        + "r6,What is 2 + 2?,4,5,6,7\n",
        encoding="utf-8",
    )
    ds = load_gpqa(p)
    assert [r.id for r in ds.rows] == ["r1", "r3", "r6"]
    assert [r.line for r in ds.rows] == [2, 4, 9]
    assert [(m.line, m.reason.split()[0]) for m in ds.malformed] == [
        (3, "4"),
        (6, "empty"),
        (8, "two"),
    ]
    assert all(m.file == str(p) for m in ds.malformed)
    assert str(ds.malformed[0]).startswith(f"{p}:3: ")


def test_gpqa_missing_columns_and_empty(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("Question,Answer\nq,a\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"g.csv:1: missing column\(s\) 'Correct Answer'"):
        load_gpqa(p)
    p.write_text(HEADER, encoding="utf-8")
    with pytest.raises(DatasetError, match="no usable rows"):
        load_gpqa(p)
    p.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="no usable rows"):
        load_gpqa(p)
    p.write_text(HEADER + "r,,,,,\n", encoding="utf-8")
    with pytest.raises(
        DatasetError, match=r"no usable rows \(1 malformed rows, first: .*:2: empty"
    ):
        load_gpqa(p)


def test_gpqa_accepts_extra_columns_and_bom(tmp_path):
    p = tmp_path / "g.csv"
    p.write_bytes(("\ufeffPre-Revision Question," + HEADER + "x,r1,Q?,1,2,3,4\n").encode("utf-8"))
    ds = load_gpqa(p)
    assert ds.rows[0].fields["Pre-Revision Question"] == "x"


def test_aime_rows(tmp_path):
    p = tmp_path / "a.jsonl"
    lines = [
        json.dumps({"problem": "What is 1 + 1?", "answer": 2}),
        "{not json",
        json.dumps({"Problem": "Upper-case keys", "Answer": "042", "ID": "2024-I-1"}),
        json.dumps({"problem": "no answer"}),
        json.dumps({"problem": "fraction", "answer": "1/2"}),
        json.dumps([1, 2]),
        "",
        json.dumps({"question": "alias", "answer": 7.0}),
        json.dumps({"problem": "bool", "answer": True}),
    ]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_aime(p)
    assert [(r.line, r.fields["answer"]) for r in ds.rows] == [(1, 2), (3, 42), (8, 7)]
    assert ds.rows[1].id == "2024-I-1"
    assert [(m.line, m.reason) for m in ds.malformed] == [
        (2, "not valid JSON: Expecting property name enclosed in double quotes"),
        (4, "'answer' is not an integer: None"),
        (5, "'answer' is not an integer: '1/2'"),
        (6, "expected a JSON object, got list"),
        (9, "'answer' is not an integer: True"),
    ]


def test_abcd_rows(tmp_path):
    p = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"question": "Q1", "choices": ["a", "b", "c", "d"], "answer": "c"}),
        json.dumps(
            {"question": "Q2", "choices": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer": "D"}
        ),
        json.dumps({"question": "Q3", "choices": ["a", "b", "c"], "answer": "A"}),
        json.dumps({"question": "Q4", "choices": ["a", "b", "c", "d"], "answer": "E"}),
        json.dumps({"choices": ["a", "b", "c", "d"], "answer": "A"}),
    ]
    p.write_text("\n".join(lines), encoding="utf-8")
    ds = load_abcd(p)
    assert [(r.fields["question"], r.fields["answer"]) for r in ds.rows] == [
        ("Q1", "C"),
        ("Q2", "D"),
    ]
    assert [m.line for m in ds.malformed] == [3, 4, 5]
    assert "four non-empty strings" in ds.malformed[0].reason


def test_invalid_utf8_rows_are_malformed_rows(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"problem": "x", "answer": 1}\n{"problem": "\xff", "answer": 2}\n')
    ds = load_aime(p)
    assert len(ds.rows) == 1 and [(m.line, m.reason) for m in ds.malformed] == [
        (2, "invalid UTF-8")
    ]
    g = tmp_path / "g.csv"
    g.write_bytes(HEADER.encode() + b"r1,Q\xfe?,1,2,3,4\nr2,Q?,1,2,3,4\n")
    ds = load_gpqa(g)
    assert [r.id for r in ds.rows] == ["r2"] and ds.malformed[0].line == 2
    t = tmp_path / "t.txt"
    t.write_bytes(b"fine\nbad \xff here\n")
    with pytest.raises(DatasetError, match=r"t.txt:2: invalid UTF-8 at byte 9"):
        load_text(t)


def test_empty_text_and_corpus_names(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match="is empty"):
        load_text(p)
    name, text = resolve_text("synthetic:valid")
    assert name == "synthetic:valid" and text.startswith("What is")
    with pytest.raises(DatasetError, match="unknown corpus 'wiki'"):
        resolve_text("wiki:valid")
    with pytest.raises(DatasetError, match="splits 'train' and 'valid'"):
        resolve_text("synthetic:test")
    p.write_text("hello", encoding="utf-8")
    assert resolve_text(str(p)) == (str(p), "hello")
