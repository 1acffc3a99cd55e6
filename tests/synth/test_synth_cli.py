"""``os2d synth`` end to end on real backgrounds and packshots from ../shared/data."""
from __future__ import annotations

import csv
import sys

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from os2d.cli import main as cli_main
from os2d.cli import synth as synth_cli

PACKSHOTS = ["Anjou.jpg", "Alpro-Fresh-Soy-Milk.jpg", "Banana.jpg"]
BACKGROUNDS = ["bsd68_101085.jpg", "bsd68_103070.jpg"]


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    synth_cli.register(app)

    @app.callback()
    def _root() -> None:  # keep "synth" as a named subcommand
        pass

    return app


def _args(shared, out, *extra):
    iconic = shared("data", "grocery-store", "iconic")
    bgs = shared("data", "backgrounds")
    args = ["synth", "--classes", str(iconic / PACKSHOTS[0]), *(str(iconic / p) for p in PACKSHOTS[1:])]
    for name in BACKGROUNDS:
        args += ["--backgrounds", str(bgs / name)]
    return args + ["--out", str(out), "--num-scenes", "3", "--scene-size", "320", "--seed", "11", *extra]


def test_cli_end_to_end(shared, tmp_path):
    out = tmp_path / "ds"
    result = CliRunner().invoke(_app(), _args(shared, out, "--max-objects", "3", "--split", "trainval"))
    assert result.exit_code == 0, result.output
    assert "wrote 3 scenes" in result.output
    with open(out / "classes" / "synth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["split"] for r in rows} == {"trainval"}
    assert {r["classname"] for r in rows} <= {p.rsplit(".", 1)[0] for p in PACKSHOTS}
    assert sorted(p.name for p in (out / "classes" / "images").iterdir()) == sorted(PACKSHOTS)
    for r in rows:
        with Image.open(out / "src" / r["imagefilename"]) as im:
            w, h = im.size
        assert max(w, h) == 320
        assert 0 <= float(r["lx"]) < float(r["rx"]) <= 1 and 0 <= float(r["ty"]) < float(r["by"]) <= 1

    # same seed again with --overwrite: identical bytes; without it: refused
    before = (out / "classes" / "synth.csv").read_bytes(), (out / "src" / "synth_000000.jpg").read_bytes()
    refused = CliRunner().invoke(_app(), _args(shared, out, "--max-objects", "3", "--split", "trainval"))
    assert refused.exit_code != 0 and isinstance(refused.exception, ValueError)
    again = CliRunner().invoke(_app(), _args(shared, out, "--max-objects", "3", "--split", "trainval",
                                             "--overwrite"))
    assert again.exit_code == 0, again.output
    after = (out / "classes" / "synth.csv").read_bytes(), (out / "src" / "synth_000000.jpg").read_bytes()
    assert before == after


def test_main_prints_one_line_error(shared, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    monkeypatch.setattr(cli_main, "app", _app())  # the real app also needs the other commands
    monkeypatch.setattr(cli_main, "_register_commands", lambda: None)
    monkeypatch.setattr(sys, "argv", ["os2d", *_args(shared, out)])
    with pytest.raises(SystemExit) as exc:
        cli_main.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("os2d: error: output folder is not empty") and "\n" not in err
    assert (out / "mine.txt").read_text() == "x"
