"""Each kind of bad input is marked with its reason (or raises under on_bad=error); nothing vanishes."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmindexer.config import DataConfig
from lmindexer.data.readers import BadInputError, parse_file


def jsonl(*rows) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows)


def reasons(table):
    return dict(zip(table.column("_src").to_pylist(), table.column("_skip").to_pylist()))


def test_jsonl_bad_kinds_are_marked():
    data = jsonl(
        {"doc_id": "a", "title": "Hello", "text": "world", "cat": 3},
        {"doc_id": "b", "title": "  ", "text": ""},
        {"title": "no id"},
        {"doc_id": "c", "other": "no text fields"},
        b'{"doc_id": "d", "title": "bad \xff bytes"}',
        b'{"doc_id": "e", ',
        {"doc_id": "f", "text": "x" * 50},
    )
    cfg = DataConfig(max_text_chars=40, on_long="skip")
    t = parse_file("f.jsonl", data, 0, cfg)
    assert t.num_rows == 7
    assert list(reasons(t).values()) == [
        "",
        "empty_text",
        "missing_id",
        "missing_text",
        "undecodable",
        "malformed",
        "too_long",
    ]
    first = t.slice(0, 1).to_pylist()[0]
    assert first["text"] == "Hello; world"
    assert json.loads(first["extra"]) == {"cat": 3}


def test_long_documents_truncate_or_error():
    data = jsonl({"doc_id": "f", "text": "x" * 50})
    t = parse_file("f.jsonl", data, 0, DataConfig(max_text_chars=40))
    assert t.column("_truncated").to_pylist() == [True] and len(t.column("text")[0].as_py()) == 40
    with pytest.raises(BadInputError, match="max_text_chars"):
        parse_file("f.jsonl", data, 0, DataConfig(max_text_chars=40, on_long="error"))


def test_on_bad_error_names_file_line_and_reason():
    with pytest.raises(BadInputError, match=r"f.jsonl:2: bad input \(empty_text\)"):
        parse_file(
            "f.jsonl", jsonl({"doc_id": "a", "text": "ok"}, {"doc_id": "b", "text": " "}), 0, DataConfig(on_bad="error")
        )


def test_csv_tsv_and_parquet():
    cfg = DataConfig(csv_columns=["label", "text"], id_field="@row", text_fields=["text"], label_fields=["label"])
    t = parse_file("ag.csv", b'1,"hello, world"\n2,bad \xfe\n3\n', 0, cfg)
    assert t.column("_skip").to_pylist() == ["", "undecodable", "malformed"]
    assert t.column("doc_id")[0].as_py() == "ag.csv:1" and t.column("label")[0].as_py() == "1"
    t = parse_file("x.tsv", b"doc_id\ttext\n7\thi there\n", 0, DataConfig())
    assert t.to_pylist()[0]["doc_id"] == "7" and t.to_pylist()[0]["text"] == "hi there"
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": [1, 2], "title": ["a", None], "text": ["b", None]}), sink)
    t = parse_file("x.parquet", sink.getvalue().to_pybytes(), 3, DataConfig())
    assert t.column("_skip").to_pylist() == ["", "empty_text"]
    assert t.column("_order")[0].as_py() == (3 << 32) | 1


def test_list_fields_join_and_labels():
    cfg = DataConfig(
        id_field="item_id",
        text_fields=["title", "brand", "categories"],
        label_fields=["category_l2", "category_l3"],
        keep_extra=False,
    )
    row = {
        "item_id": 5,
        "title": "Lip balm",
        "brand": None,
        "categories": ["Makeup", "Lips"],
        "category_l2": "Makeup",
        "category_l3": "Lips",
    }
    t = parse_file("items.jsonl", jsonl(row), 0, cfg).to_pylist()[0]
    assert t["doc_id"] == "5" and t["text"] == "Lip balm; Makeup, Lips"
    assert t["label"] == "Makeup" and t["labels"] == ["Makeup", "Lips"] and t["extra"] is None
