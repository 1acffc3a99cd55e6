"""JsonlWriter / read_jsonl: line format, flushing, resume, repair of a cut-short last line, refusals."""
from __future__ import annotations

import json
import logging

import pytest

from os2d.batch.jsonl import JsonlWriter, read_jsonl
from os2d.errors import InputNotFoundError, InvalidInputError


def record(image, *dets):
    return {"image": image, "width": 500, "height": 332, "seconds": 0.5,
            "detections": [{"class": c, "score": s, "bbox": [1.0, 2.0, 30.5, 40.25]} for c, s in dets]}


def test_each_record_is_one_json_line_flushed_at_once(tmp_path):
    out = tmp_path / "r.jsonl"
    writer = JsonlWriter(out)
    assert not out.exists()  # nothing is created before the first result
    writer.write(record("a.jpg", ("Pepsi", 0.75)))
    # readable by another process before close: one complete line
    assert out.read_text(encoding="utf-8") == json.dumps(record("a.jpg", ("Pepsi", 0.75))) + "\n"
    writer.write({"image": "b.jpg", "error": "scene image b.jpg is not a readable image"})
    writer.close()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [record("a.jpg", ("Pepsi", 0.75)),
                                                    {"image": "b.jpg", "error": "scene image b.jpg is not a readable image"}]
    assert read_jsonl(out) == [json.loads(line) for line in lines]
    assert writer.done == {"a.jpg", "b.jpg"}


def test_non_finite_scores_are_refused_not_written_as_nan(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as writer, pytest.raises(ValueError):
        writer.write(record("a.jpg", ("x", float("nan"))))


def test_existing_file_refused_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(record("a.jpg")) + "\n")
    before = out.read_bytes()
    with pytest.raises(InvalidInputError, match="exists.*--resume.*--overwrite"):
        JsonlWriter(out)
    assert out.read_bytes() == before


def test_overwrite_replaces_the_file(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(record("old.jpg")) + "\n")
    before = out.read_bytes()
    with JsonlWriter(out, overwrite=True) as writer:
        assert writer.done == set()
        assert out.read_bytes() == before  # a run stopped before its first result loses nothing
        writer.write(record("new.jpg"))
    assert [r["image"] for r in read_jsonl(out)] == ["new.jpg"]


def test_folder_given_as_the_file_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="must be a file, got a folder"):
        JsonlWriter(tmp_path, resume=True)


def test_missing_parent_folder_is_refused(tmp_path):
    with pytest.raises(InputNotFoundError, match="output folder does not exist"):
        JsonlWriter(tmp_path / "nope" / "r.jsonl")


def test_resume_skips_done_images_and_appends(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as writer:
        writer.write(record("a.jpg", ("c", 0.5)))
        writer.write(record("b.jpg"))
    with JsonlWriter(out, resume=True) as writer:
        assert writer.done == {"a.jpg", "b.jpg"}
        assert writer.previous == [record("a.jpg", ("c", 0.5)), record("b.jpg")]
        assert writer.is_done("a.jpg") and not writer.is_done("c.jpg")
        writer.write(record("c.jpg"))
    assert [r["image"] for r in read_jsonl(out)] == ["a.jpg", "b.jpg", "c.jpg"]


def test_resume_recognises_the_same_file_spelled_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out) as writer:
        writer.write(record("scenes/a.jpg"))
    writer = JsonlWriter(out, resume=True)
    assert writer.is_done(tmp_path / "scenes" / "a.jpg") and writer.is_done("./scenes/a.jpg")
    assert not writer.is_done(tmp_path / "scenes" / "b.jpg")


def test_resume_repairs_a_last_line_cut_short(tmp_path, caplog):
    out = tmp_path / "r.jsonl"
    full = json.dumps(record("a.jpg", ("c", 0.5))) + "\n"
    half = json.dumps(record("b.jpg", ("c", 0.25), ("d", 0.125)))
    out.write_text(full + half[: len(half) // 2], encoding="utf-8")  # a run killed while writing b.jpg
    with caplog.at_level(logging.WARNING):
        writer = JsonlWriter(out, resume=True)
    assert "cut short" in caplog.text
    assert writer.done == {"a.jpg"}
    writer.write(record("b.jpg", ("c", 0.25)))
    writer.close()
    # the partial line is gone, the complete one kept byte for byte, the new one appended
    assert out.read_text(encoding="utf-8") == full + json.dumps(record("b.jpg", ("c", 0.25))) + "\n"


def test_resume_repair_waits_for_the_first_line_or_close(tmp_path):
    out = tmp_path / "r.jsonl"
    full = json.dumps(record("a.jpg")) + "\n"
    out.write_text(full + '{"image": "b.jpg", "wid', encoding="utf-8")
    before = out.read_bytes()
    writer = JsonlWriter(out, resume=True)
    assert out.read_bytes() == before  # checked, not changed: a run that stops here changes nothing
    writer.close()
    assert out.read_text(encoding="utf-8") == full


def test_read_jsonl_ignores_a_cut_short_last_line(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(record("a.jpg")) + "\n" + '{"image": "b.jp', encoding="utf-8")
    assert [r["image"] for r in read_jsonl(out)] == ["a.jpg"]


def test_resume_first_line_cut_short_gives_an_empty_file(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"image": "a.jpg", "width": 5', encoding="utf-8")
    writer = JsonlWriter(out, resume=True)
    writer.close()
    assert writer.done == set() and out.read_bytes() == b""


def test_resume_tries_error_lines_again(tmp_path):
    out = tmp_path / "r.jsonl"
    good = record("a.jpg", ("c", 0.5))
    out.write_text(json.dumps(good) + "\n" + json.dumps({"image": "bad.jpg", "error": "corrupt"}) + "\n"
                   + json.dumps(record("c.jpg")) + "\n", encoding="utf-8")
    writer = JsonlWriter(out, resume=True)
    assert writer.done == {"a.jpg", "c.jpg"} and not writer.is_done("bad.jpg")
    writer.write(record("bad.jpg"))
    writer.close()
    # the error line is removed, the others kept, the image tried again appended
    assert read_jsonl(out) == [good, record("c.jpg"), record("bad.jpg")]


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00binary", b"just some notes\nmore\n",
                                     b"[1, 2, 3]\n", b"5\n", b'{"no_image": 1}\n', b"no newline at all"])
def test_resume_refuses_a_file_that_is_not_os2d_jsonl_and_leaves_it_alone(tmp_path, content):
    out = tmp_path / "notes.jsonl"
    out.write_bytes(content)
    with pytest.raises(InvalidInputError, match="not an os2d|not a JSON line"):
        JsonlWriter(out, resume=True)
    assert out.read_bytes() == content


def test_resume_of_a_missing_file_starts_it(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out, resume=True) as writer:
        assert writer.done == set()
        writer.write(record("a.jpg"))
    assert len(read_jsonl(out)) == 1
