"""THE TABLE of bad inputs. To add a case, append ``cli(...)`` or ``api(...)`` to ``CASES``.

``cli(id, *argv, setup=..., error=...)``: ``os2d ARGV`` (``{d}`` = the case's folder, also its
working directory) must exit with code 2, print one ``os2d: error:`` line containing ``error``,
no traceback, and leave the folder unchanged. ``api(id, call, ...)``: ``call(folder, assets)``
must raise an :class:`os2d.errors.UserError` with a one-line message containing ``error``.
``setup(folder, assets)`` writes the inputs; see ``robust_inputs.py`` for generators and
``robust_harness.py`` for how cases are run and judged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import robust_inputs as gen
from robust_harness import api, cli

# ------------------------------------------------------------------------------------------ synth
SYNTH = ("synth", "--classes", "{d}/classes", "--backgrounds", "{d}/bgs", "--out", "{d}/out",
         "--num-scenes", "2", "--scene-size", "128")


def synth_case(id, *extra, setup=None, error="", **kw):
    def prepare(folder: Path, assets) -> None:
        gen.synth_inputs(folder)
        if setup is not None:
            setup(folder, assets)

    return cli(id, *SYNTH, *extra, setup=prepare, error=error, **kw)


def _bg(make):
    return lambda folder, _assets: make(folder / "bgs")


def _out_is_file(folder: Path, _assets) -> None:
    (folder / "out").write_text("my notes")


def _out_not_empty(folder: Path, _assets) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "thesis.tex").write_text("precious")


SYNTH_CASES = [
    synth_case("synth-background-empty-file", setup=_bg(lambda d: gen.junk(d / "c.jpg", b"")),
               error="is an empty file"),
    synth_case("synth-background-random-bytes", setup=_bg(lambda d: gen.junk(d / "c.jpg")),
               error="background image is not a readable image"),
    synth_case("synth-background-truncated", setup=_bg(lambda d: gen.truncated(d / "c.jpg", d / "a.jpg")),
               error="corrupt or truncated"),
    cli("synth-background-fifo", "synth", "--classes", "{d}/classes", "--backgrounds", "{d}/pipe.jpg",
        "--out", "{d}/out", setup=lambda f, a: (gen.synth_inputs(f), gen.fifo(f / "pipe.jpg")), timeout=60,
        error="not a regular file"),
    synth_case("synth-background-huge-header", setup=_bg(lambda d: gen.huge_header(d / "huge.ppm")),
               error="too large"),
    cli("synth-background-folder-without-images", "synth", "--classes", "{d}/classes", "--backgrounds",
        "{d}/empty", "--out", "{d}/out", setup=lambda f, a: (gen.synth_inputs(f), (f / "empty").mkdir()),
        error="no background images found in folder"),
    cli("synth-class-folder-without-images", "synth", "--classes", "{d}/empty", "--backgrounds", "{d}/bgs",
        "--out", "{d}/out", setup=lambda f, a: (gen.synth_inputs(f), (f / "empty").mkdir(),
                                                (f / "empty" / "notes.txt").write_text("x")),
        error="no class images found"),
    synth_case("synth-class-image-corrupt", setup=lambda f, a: gen.junk(f / "classes" / "bad.png"),
               error="bad.png"),
    cli("synth-class-image-fifo", "synth", "--classes", "{d}/pipe.png", "--backgrounds", "{d}/bgs",
        "--out", "{d}/out", setup=lambda f, a: (gen.synth_inputs(f), gen.fifo(f / "pipe.png")), timeout=60,
        error="not a regular file"),
    cli("synth-duplicate-class-names", "synth", "--classes", "{d}/classes", "{d}/more", "--backgrounds",
        "{d}/bgs", "--out", "{d}/out",
        setup=lambda f, a: (gen.synth_inputs(f), gen.packshot(f / "more" / "red.jpg")),
        error="same name 'red'"),
    cli("synth-missing-class-path", "synth", "--classes", "{d}/nope.png", "--backgrounds", "{d}/bgs",
        "--out", "{d}/out", setup=lambda f, a: gen.synth_inputs(f), error="not found"),
    synth_case("synth-zero-scenes", "--num-scenes", "0", error="num_scenes=0 must be >= 1"),
    synth_case("synth-negative-scenes", "--num-scenes", "-3", error="num_scenes=-3"),
    synth_case("synth-tiny-scene-size", "--scene-size", "10", error="scene_size=10"),
    synth_case("synth-zero-max-iou", "--max-iou", "0", error="max_iou=0.0"),
    synth_case("synth-object-larger-than-scene", "--object-min", "2", error="object_size"),
    synth_case("synth-path-in-name", "--name", "../evil", error="name='../evil'"),
    synth_case("synth-empty-split", "--split", " ", error="split=' '"),
    synth_case("synth-zero-min-objects", "--min-objects", "0", error="min_objects=0"),
    synth_case("synth-nan-rotation", "--rotation-max-deg", "nan", error="rotation_max_deg=nan"),
    synth_case("synth-nothing-fits", "--min-box-size", "60", "--object-max", "0.45",
               error="min_box_size=60"),
    synth_case("synth-out-is-a-file", setup=_out_is_file, error="not a folder"),
    synth_case("synth-out-not-empty", setup=_out_not_empty, error="output folder is not empty"),
    synth_case("synth-out-not-empty-overwrite", "--overwrite", setup=_out_not_empty, error="refusing to overwrite"),
    synth_case("synth-usage-bad-mask", "--mask", "bogus", error="--mask"),
    synth_case("synth-usage-scenes-not-a-number", "--num-scenes", "many", error="--num-scenes"),
]

# ------------------------------------------------------------------------------------------ train
TRAIN = ("train", "--config", "{d}/c.yaml", "--out", "{d}/run", "--no-progress", "-q")


def _fill(value, folder: Path):
    """``{d}`` -> the case folder, inside nested config sections."""
    if isinstance(value, str):
        return value.replace("{d}", str(folder))
    if isinstance(value, dict):
        return {k: _fill(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, folder) for v in value]
    return value


def train_case(id, *, config_text=None, sections=None, extra=(), setup=None, error="", **kw):
    def prepare(folder: Path, assets) -> None:
        dataset = gen.csv_dataset(folder / "data")
        if config_text is not None:
            (folder / "c.yaml").write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
        else:
            gen.train_config(folder / "c.yaml", dataset, **_fill(sections or {}, folder))
        if setup is not None:
            setup(folder, assets)

    return cli(id, *TRAIN, *extra, setup=prepare, error=error, **kw)


def _resume(checkpoint):
    def prepare(folder: Path, _assets) -> None:
        gen.run_folder(folder, checkpoint=checkpoint(folder) if callable(checkpoint) else checkpoint)
    return prepare


RESUME = ("train", "--out", "{d}/run", "--resume", "--no-progress", "-q")


def _model_init(**changes):
    def prepare(folder: Path, assets) -> None:
        assets.copy_model(folder / "model", **changes)
    return prepare


def _corrupt_model_weights(folder: Path, assets) -> None:
    model = assets.copy_model(folder / "model")
    data = (model / "weights.safetensors").read_bytes()
    (model / "weights.safetensors").write_bytes(data[: len(data) // 3])


TRAIN_CASES = [
    cli("train-config-missing", "train", "--config", "{d}/none.yaml", "--out", "{d}/run",
        error="train config not found"),
    cli("train-config-is-a-folder", "train", "--config", "{d}", "--out", "{d}/run", error="not a regular file"),
    train_case("train-config-bad-yaml", config_text="optim: {lr: 0.1\n", error="is not valid YAML"),
    train_case("train-config-binary", config_text=b"\xff\xfe\x00\x01garbage", error="is not UTF-8 text"),
    train_case("train-config-a-list", config_text="- 1\n- 2\n", error="must be a mapping of settings"),
    train_case("train-config-unknown-key", sections={"optim": {"lrr": 0.1}},
               error="unknown setting 'optim.lrr' (did you mean 'optim.lr'?)"),
    train_case("train-config-wrong-type", sections={"batch": {"patch_size": [600]}},
               error="batch.patch_size must be an integer, got [600]"),
    train_case("train-config-nan-lr", config_text="optim: {lr: .nan}\n", error="optim.lr must be a finite number"),
    train_case("train-config-huge-class-size", sections={"batch": {"class_size": 100000}},
               error="batch.class_size=100000"),
    train_case("train-config-bad-device", sections={"device": "tpu"}, error="device='tpu'"),
    train_case("train-config-decreasing-lr-steps", sections={"optim": {"lr_steps": [10, 5]}},
               error="optim.lr_steps=[10, 5]"),
    train_case("train-set-without-value", extra=("--set", "optim.lr"), error="--set expects KEY=VALUE"),
    train_case("train-set-bad-index", extra=("--set", "data.train[x].path=1"), error="not a setting name"),
    train_case("train-set-bad-yaml", extra=("--set", "optim.lr=[1"), error="value is not valid YAML"),
    train_case("train-dataset-missing", sections={"data": {"train": [{"path": "{d}/nothing"}]}},
               error="nothing"),
    train_case("train-dataset-latin1-csv", setup=lambda f, a: gen.csv_dataset(
        f / "data", rows="0,s0.jpg,0,red.png,0,0,0.2,0.2,0.6,0.7,train,caf\u00e9\n", encoding="latin-1"),
        error="ds.csv:2: not UTF-8 text"),
    train_case("train-dataset-coco-bad-width", sections={"data": {"train": [{"path": "{d}/coco/ann.json"}]}},
               setup=lambda f, a: gen.coco_dataset(f / "coco", width="wide", height=120),
               error="'width' must be a whole number of pixels, got 'wide'"),
    train_case("train-out-holds-a-run", setup=lambda f, a: ((f / "run").mkdir(), (f / "run" / "checkpoint.pt")
                                                             .write_bytes(b"x")),
               error="already holds a training run"),
    train_case("train-init-conflicting-backbone",
               sections={"model": {"init": "{d}/model", "backbone": "resnet50"}}, setup=_model_init(),
               error="model.backbone='resnet50' but the model has 'efficientnet-lite0'"),
    train_case("train-init-corrupt-weights", sections={"model": {"init": "{d}/model"}},
               setup=_corrupt_model_weights, error="corrupt or truncated"),
    train_case("train-init-model-claims-lite1", sections={"model": {"init": "{d}/model"}},
               setup=_model_init(backbone="efficientnet-lite1"), error="saved for backbone='efficientnet-lite0'"),
    cli("train-resume-without-checkpoint", *RESUME, setup=_resume(None), error="no training checkpoint"),
    cli("train-resume-malicious-checkpoint", *RESUME, forbidden="pwned",
        setup=_resume(lambda f: gen.malicious_checkpoint(f / "pwned")),
        error="is not a plain tensor checkpoint and was not loaded"),
    cli("train-resume-truncated-checkpoint", *RESUME,
        setup=_resume(lambda f: gen.torch_bytes({"format": "x", "w": np.zeros(1000)})[:300]),
        error="corrupt, truncated or not a PyTorch file"),
    cli("train-resume-foreign-checkpoint", *RESUME, setup=_resume(gen.torch_bytes({"epoch": 3})),
        error="is not an os2d training checkpoint"),
    cli("train-resume-damaged-checkpoint", *RESUME,
        setup=_resume(gen.torch_bytes({"format": "os2d-train-checkpoint", "format_version": 2, "iteration": 1})),
        error="is damaged: 'model' is not a dict of tensors"),
    cli("train-usage-missing-out", "train", "--config", "{d}/c.yaml", error="Missing option '--out'"),
]


# ------------------------------------------------------------------------------------------ API
def _load_model(rel):
    def call(folder: Path, _assets):
        from os2d.zoo import load_model

        return load_model(folder / rel if rel else rel)
    return call


def _image(make):
    def call(folder: Path, _assets):
        from os2d.data.images import load_image

        return load_image(make(folder))
    return call


def _csv(rows=None, encoding="utf-8", header=None):
    def prepare(folder: Path, _assets) -> None:
        path = gen.csv_dataset(folder, rows=rows, encoding=encoding)
        if header is not None:
            path.write_text(header)
    return prepare


def _read_csv(folder: Path, _assets):
    from os2d.data.datasets import read_os2d_csv

    return read_os2d_csv(folder / "classes" / "ds.csv")


def _read_coco(folder: Path, _assets):
    from os2d.data.datasets import read_coco

    return read_coco(folder / "ann.json", cache_dir=folder / "cache")


def _coco_with(**image_fields):
    return lambda folder, _assets: gen.coco_dataset(folder, **image_fields)


def _coco_edit(edit):
    def prepare(folder: Path, _assets) -> None:
        import json

        path = gen.coco_dataset(folder)
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return prepare


def _build_with_weights(backbone):
    def call(folder: Path, _assets):
        from os2d.model.checkpoint import build_model
        from os2d.model.config import ModelConfig

        return build_model(ModelConfig(backbone=backbone, backbone_weights=str(folder / "w.pth")))
    return call


def _evil_weights(folder: Path, _assets) -> None:
    (folder / "w.pth").write_bytes(gen.torch_bytes({"stem.conv.weight": gen.Touch(folder / "pwned")}))


def _read_detections(folder: Path, _assets):
    from os2d.eval.detections_io import read_detections

    return read_detections(folder / "dets.json")


def _detections(text):
    return lambda folder, _assets: (folder / "dets.json").write_text(text)


def _generate(**config):
    def call(folder: Path, _assets):
        from os2d.synth import SynthConfig, generate_dataset

        return generate_dataset([folder / "classes"], [folder / "bgs"], folder / "out", SynthConfig(**config))
    return call


def _truncate_weights(folder: Path, assets) -> None:
    model = assets.copy_model(folder / "m")
    data = (model / "weights.safetensors").read_bytes()
    (model / "weights.safetensors").write_bytes(data[:500])


API_CASES = [
    # images
    api("image-nan-array", lambda f, a: _image(lambda _f: np.array([[0.5, np.nan]]))(f, a), error="NaN"),
    api("image-bool-array", lambda f, a: _image(lambda _f: np.ones((4, 4), bool))(f, a), error="dtype bool"),
    api("image-two-channel-array", lambda f, a: _image(lambda _f: np.zeros((4, 4, 2), np.uint8))(f, a),
        error="got shape (4, 4, 2)"),
    api("image-32-bit-values", lambda f, a: _image(lambda _f: np.full((4, 4), 10**6, np.int64))(f, a),
        error="integer pixel values up to 1000000"),
    api("image-empty-pil", lambda f, a: _image(lambda _f: Image.new("RGB", (0, 3)))(f, a), error="is empty"),
    api("image-wrong-type", lambda f, a: _image(lambda _f: 42)(f, a), error="got int"),
    api("image-fifo", _image(lambda f: f / "pipe.jpg"), setup=lambda f, a: gen.fifo(f / "pipe.jpg"),
        error="not a regular file", timeout=30),
    api("image-directory", _image(lambda f: f / "dir.jpg"), setup=lambda f, a: (f / "dir.jpg").mkdir(),
        error="is a directory"),
    api("image-huge-header", _image(lambda f: f / "bomb.ppm"), setup=lambda f, a: gen.huge_header(f / "bomb.ppm"),
        error="too large"),
    api("image-truncated-png", _image(lambda f: f / "cut.png"),
        setup=lambda f, a: (Image.new("RGB", (64, 64), (1, 2, 3)).save(f / "full.png"),
                            gen.truncated(f / "cut.png", f / "full.png")), error="cut.png"),
    # datasets
    api("csv-latin1", _read_csv, setup=_csv("0,s0.jpg,0,red.png,0,0,0.2,0.2,0.6,0.7,train,Caf\u00e9\n",
                                            encoding="latin-1"), error="ds.csv:2: not UTF-8 text"),
    api("csv-missing-columns", _read_csv, setup=_csv(header="imageid,lx\n0,0.1\n"), error="is missing columns"),
    api("csv-empty", _read_csv, setup=_csv(header=""), error="is empty"),
    api("csv-no-rows", _read_csv, setup=_csv(rows=""), error="has no rows"),
    api("csv-bad-number", _read_csv, setup=_csv("0,s0.jpg,0,red.png,0,0,left,0.2,0.6,0.7,train,red\n"),
        error="ds.csv:2: column 'lx' is not a number: 'left'"),
    api("csv-box-outside", _read_csv, setup=_csv("0,s0.jpg,0,red.png,0,0,0.2,0.2,1.6,0.7,train,red\n"),
        error="ds.csv:2: relative box"),
    api("csv-missing-class-image", _read_csv, setup=_csv("0,s0.jpg,0,blue.png,0,0,0.2,0.2,0.6,0.7,train,b\n"),
        error="class image for class 'b' not found"),
    api("csv-missing-scene", _read_csv, setup=_csv("0,gone.jpg,0,red.png,0,0,0.2,0.2,0.6,0.7,train,red\n"),
        error="scene image 'gone.jpg' not found"),
    api("coco-width-not-a-number", _read_coco, setup=_coco_with(width="wide", height=120),
        error="images[0] ('s0.jpg'): 'width' must be a whole number of pixels, got 'wide'"),
    api("coco-not-json", _read_coco, setup=lambda f, a: (f / "ann.json").write_text("{images: ["),
        error="is not valid JSON"),
    api("coco-unknown-category", _read_coco, setup=_coco_edit(lambda d: d["annotations"][0].update(category_id=9)),
        error="refers to unknown category id 9"),
    api("coco-unhashable-category", _read_coco,
        setup=_coco_edit(lambda d: d["annotations"][0].update(category_id=[7])),
        error="refers to unknown category id [7]"),
    api("coco-bbox-strings", _read_coco, setup=_coco_edit(lambda d: d["annotations"][0].update(bbox=["1"] * 4)),
        error="'bbox' must be 4 finite numbers"),
    # models and checkpoints
    api("model-truncated-weights", _load_model("m"), setup=_truncate_weights, error="corrupt or truncated"),
    api("model-config-claims-lite1", _load_model("m"),
        setup=lambda f, a: a.copy_model(f / "m", backbone="efficientnet-lite1"),
        error="saved for backbone='efficientnet-lite0' but"),
    api("model-grid-size-mismatch", _load_model("m"), setup=lambda f, a: a.copy_model(f / "m", grid_size=9),
        error="grid_size=15 but"),
    api("model-config-not-json", _load_model("m"),
        setup=lambda f, a: (a.copy_model(f / "m"), (f / "m" / "config.json").write_text("{nope")),
        error="is not valid JSON"),
    api("model-config-wrong-type", _load_model("m"), setup=lambda f, a: a.copy_model(f / "m", class_size="big"),
        error="model.class_size='big'"),
    api("model-weights-missing", _load_model("m"),
        setup=lambda f, a: (a.copy_model(f / "m"), (f / "m" / "weights.safetensors").unlink()),
        error="model weights not found"),
    api("model-reference-pth-malicious", _load_model("ref.pth"), forbidden="pwned",
        setup=lambda f, a: (f / "ref.pth").write_bytes(gen.torch_bytes({"net": gen.Touch(f / "pwned")})),
        error="is not a plain tensor checkpoint and was not loaded"),
    api("model-reference-pth-random-bytes", _load_model("ref.pth"),
        setup=lambda f, a: gen.junk(f / "ref.pth"), error="ref.pth"),
    api("model-reference-pth-not-os2d", _load_model("ref.pth"),
        setup=lambda f, a: (f / "ref.pth").write_bytes(gen.torch_bytes({"net": {"fc.weight": gen.zeros(1)}})),
        error="ref.pth"),
    api("model-unknown-name", lambda f, a: __import__("os2d.zoo").zoo.load_model("bestmodel"),
        error="unknown model 'bestmodel'"),
    api("model-empty-name", lambda f, a: __import__("os2d.zoo").zoo.load_model(" "), error="no model given"),
    api("backbone-weights-malicious-efficientnet", _build_with_weights("efficientnet-lite0"), forbidden="pwned",
        setup=_evil_weights, error="is not a plain tensor checkpoint and was not loaded"),
    api("backbone-weights-malicious-resnet", _build_with_weights("resnet50"), forbidden="pwned",
        setup=_evil_weights, error="is not a plain tensor checkpoint and was not loaded"),
    api("backbone-weights-wrong-architecture", _build_with_weights("resnet50"),
        setup=lambda f, a: (f / "w.pth").write_bytes(gen.torch_bytes({"conv1.weight": gen.zeros(3)})),
        error="do not match resnet50"),
    # detections files
    api("detections-not-json", _read_detections, setup=_detections("[{"), error="is not valid JSON"),
    api("detections-nan-score", _read_detections,
        setup=_detections('[{"image": "a.jpg", "class": "x", "score": NaN, "bbox": [0, 0, 1, 1]}]'),
        error="'score' must be a finite number"),
    api("detections-inverted-box", _read_detections,
        setup=_detections('[{"image": "a.jpg", "class": "x", "score": 1, "bbox": [5, 0, 1, 1]}]'),
        error="has x2 < x1"),
    # synth API
    api("synth-api-zero-scenes", _generate(num_scenes=0), setup=lambda f, a: gen.synth_inputs(f),
        error="num_scenes=0 must be >= 1"),
    api("synth-api-object-size-not-numbers", _generate(object_size="ab"), setup=lambda f, a: gen.synth_inputs(f),
        error="object_size='ab' must be a pair"),
]

# ------------------------------------------------------------------------------------------ fresh
#: Run as their own ``python -m os2d.cli.main`` (full start-up and teardown; keep few).
FRESH_CASES = [
    cli("usage-bare-os2d", fresh_process=True, error="missing command"),
    cli("fresh-train-resume-malicious-checkpoint", *RESUME, forbidden="pwned", fresh_process=True,
        setup=_resume(lambda f: gen.malicious_checkpoint(f / "pwned")),
        error="is not a plain tensor checkpoint and was not loaded"),
]

USAGE_CASES = [
    cli("usage-unknown-flag", "synth", "--frobnicate", error="--frobnicate"),
    cli("usage-not-an-integer", "detect", "--max-dets", "abc", error="--max-dets"),
    cli("usage-missing-required-option", "train", error="Missing option '--out'"),
    cli("usage-unknown-command", "frobnicate", error="frobnicate"),
]

# ------------------------------------------------------------------------------------------ detect
DETECT = ("detect", "--image", "{d}/scenes/a.jpg", "--classes", "{d}/classes", "--model", "untrained")
BATCH = ("detect", "--image", "{d}/scenes", "--classes", "{d}/classes", "--model", "untrained")


def detect_inputs(folder: Path) -> None:
    """``scenes/{a,b}.jpg``, ``classes/{red,blue}.png`` and a user's file ``mine.json``."""
    gen.jpeg(folder / "scenes" / "a.jpg", size=(320, 240), seed=1)
    gen.jpeg(folder / "scenes" / "b.jpg", size=(300, 260), seed=2)
    gen.packshot(folder / "classes" / "red.png")
    gen.packshot(folder / "classes" / "blue.png", colour=(20, 40, 200))
    (folder / "mine.json").write_text('{"precious": true}\n')


def detect_case(id, *extra, base=DETECT, setup=None, error="", **kw):
    def prepare(folder: Path, assets) -> None:
        detect_inputs(folder)
        if setup is not None:
            setup(folder, assets)

    return cli(id, *base, *extra, setup=prepare, error=error, **kw)


def _catalog(folder: Path, _assets=None, *, model: str = "untrained") -> Path:
    """``cat/``: the two classes of ``classes/`` as a catalog of ``model``."""
    from os2d.catalog import Catalog
    from os2d.detector import Detector

    detector = Detector.load(model)
    catalog = Catalog.create(folder / "cat", detector)
    catalog.add({"red": [folder / "classes" / "red.png"], "blue": [folder / "classes" / "blue.png"]},
                detector=detector)
    return catalog.folder


def _damage_class_file(folder: Path, assets) -> None:
    import json

    cat = _catalog(folder, assets)
    index = json.loads((cat / "catalog.json").read_text())
    path = cat / index["classes"][1]["features"]
    path.write_bytes(path.read_bytes()[:-64])


def _tiny_class(folder: Path, _assets) -> None:
    Image.new("RGB", (10, 40), "red").save(folder / "tiny.png")


def _folder_with(*files):
    def prepare(folder: Path, _assets) -> None:
        for rel in files:
            gen.packshot(folder / rel) if rel.endswith(".png") else gen.junk(folder / rel, b"mine")
    return prepare


DETECT_CASES = [
    detect_case("detect-scales-inf", "--scales", "inf", error="invalid --scales"),
    detect_case("detect-scales-nan", "--scales", "nan", error="got nan"),
    detect_case("detect-scales-1e9", "--scales", "1e9", error="in [32, 4096]"),
    detect_case("detect-scales-6000", "--scales", "6000", error="in [32, 4096], got 6000"),
    detect_case("detect-scales-not-numbers", "--scales", "big,bigger", error="comma-separated numbers"),
    detect_case("detect-class-size-huge", "--class-size", "100000", error="invalid --class-size 100000"),
    detect_case("detect-base-size-zero", "--base-size", "0", error="invalid --base-size 0"),
    detect_case("detect-threshold-nan", "--threshold", "nan", error="--threshold must be a number"),
    detect_case("detect-max-dets-zero", "--max-dets", "0", error="--max-dets"),
    detect_case("detect-usage-max-dets-abc", "--max-dets", "abc", error="--max-dets"),
    detect_case("detect-usage-unknown-flag", "--frobnicate", error="--frobnicate"),
    detect_case("detect-threads-zero", "--threads", "0", error="--threads must be between 1 and 1024"),
    detect_case("detect-mode-unknown", "--mode", "turbo", error="turbo"),
    detect_case("detect-empty-class-name", setup=_folder_with("classes/__2.png"),
                error="class image '__2.png' in {d}/classes gives an empty class name"),
    detect_case("detect-class-pair-without-name", "--class", "={d}/classes/red.png", error="NAME=IMAGE"),
    detect_case("detect-draw-unknown-suffix", "--draw", "{d}/out.xyz", "--json", "{d}/out.json",
                error="unknown image suffix '.xyz'"),
    detect_case("detect-json-and-draw-same-file", "--json", "{d}/out.png", "--draw", "{d}/out.png",
                error="two outputs name the same file"),
    detect_case("detect-jsonl-and-coco-same-file", "--jsonl", "{d}/r.json", "--coco", "./r.json",
                error="two outputs name the same file"),
    detect_case("detect-json-is-the-crops-folder", "--json", "{d}/out", "--crops", "{d}/out",
                error="is also the --crops/--draw folder"),
    detect_case("detect-draw-onto-input-scene", "--draw", "{d}/scenes/a.jpg", "--overwrite",
                error="an output would replace an input file: {d}/scenes/a.jpg"),
    detect_case("detect-json-onto-class-image", "--json", "{d}/classes/red.png", "--overwrite",
                error="would replace an input file"),
    detect_case("detect-json-exists", "--json", "{d}/mine.json", error="output file exists: {d}/mine.json"),
    detect_case("detect-jsonl-exists-without-resume", "--jsonl", "{d}/mine.json", error="use --resume"),
    detect_case("detect-jsonl-is-a-folder", "--jsonl", "{d}/scenes", error="must be a file, got a folder"),
    detect_case("detect-resume-file-not-jsonl", "--jsonl", "{d}/notes.txt", "--resume",
                setup=lambda f, a: (f / "notes.txt").write_text("my notes\nline two\n"),
                error="notes.txt:1 is not a JSON line"),
    detect_case("detect-resume-without-jsonl", "--resume", error="--resume continues a --jsonl file"),
    detect_case("detect-crops-folder-not-empty", "--crops", "{d}/crops", setup=_folder_with("crops/thesis.tex"),
                error="--crops must be a new or empty folder"),
    detect_case("detect-crops-same-file-names", "--image", "{d}/more", "--crops", "{d}/crops", base=BATCH,
                setup=lambda f, a: gen.jpeg(f / "more" / "a.jpg", size=(200, 150)), error="share the file name 'a'"),
    detect_case("detect-draw-several-scenes-to-an-image-name", "--draw", "{d}/out.png", base=BATCH,
                error="must be a folder, got an image file name"),
    detect_case("detect-draw-folder-parent-missing", "--draw", "{d}/no/such/folder", base=BATCH,
                error="output folder does not exist"),
    detect_case("detect-workers-zero", "--workers", "0", base=BATCH, error="--workers must be at least 1, got 0"),
    detect_case("detect-ray-nothing-listening", "--ray", "127.0.0.1:1", base=BATCH, timeout=60,
                error="cannot connect to the Ray cluster at '127.0.0.1:1'"),
    detect_case("detect-ray-bad-address", "--ray", "my cluster", base=BATCH, error="--ray must be auto"),
    detect_case("detect-image-empty-string", "--image", "", base=("detect", "--classes", "{d}/classes"),
                error="--image got an empty path"),
    detect_case("detect-image-pattern-matches-nothing", "--image", "{d}/scenes/*.gif",
                base=("detect", "--classes", "{d}/classes"), error="no image matches the pattern"),
    detect_case("detect-image-folder-without-images", "--image", "{d}/empty",
                base=("detect", "--classes", "{d}/classes"), setup=_folder_with("empty/notes.txt"),
                error="no images"),
    detect_case("detect-scene-not-an-image", "--image", "{d}/bad.jpg", "--scales", "320",
                base=("detect", "--classes", "{d}/classes", "--model", "untrained"),
                setup=lambda f, a: gen.junk(f / "bad.jpg"), error="bad.jpg"),
    detect_case("detect-catalog-of-another-model", "--catalog", "{d}/cat", "--model", "default",
                base=("detect", "--image", "{d}/scenes/a.jpg"), setup=_catalog,
                error="it was built with model os2d-"),
    detect_case("detect-catalog-and-classes", "--catalog", "{d}/cat", setup=_catalog,
                error="--catalog cannot be combined with --class/--classes"),
    detect_case("detect-catalog-not-a-catalog", "--catalog", "{d}/classes",
                base=("detect", "--image", "{d}/scenes/a.jpg"), error="is not an os2d catalog"),
    detect_case("detect-catalog-damaged-class-file", "--catalog", "{d}/cat", "--model", "untrained",
                base=("detect", "--image", "{d}/scenes/a.jpg"), setup=_damage_class_file,
                error="(class 'blue') is corrupt or truncated"),
    detect_case("detect-catalog-with-sift", "--catalog", "{d}/cat", "--method", "sift",
                base=("detect", "--image", "{d}/scenes/a.jpg"), setup=_catalog, error="method 'sift' cannot use"),
    detect_case("detect-output-inside-the-catalog", "--catalog", "{d}/cat", "--json", "{d}/cat/dets.json",
                "--model", "untrained", base=("detect", "--image", "{d}/scenes/a.jpg"), setup=_catalog,
                error="is inside {d}/cat"),
]

# ------------------------------------------------------------------------------------------ catalog
def catalog_case(id, *argv, setup=None, error="", **kw):
    def prepare(folder: Path, assets) -> None:
        detect_inputs(folder)
        _catalog(folder)
        if setup is not None:
            setup(folder, assets)

    return cli(id, "catalog", *argv, setup=prepare, error=error, **kw)


def _lose_last_class_image(folder: Path, _assets) -> None:
    import json

    index = json.loads((folder / "cat" / "catalog.json").read_text())
    (folder / "cat" / index["classes"][-1]["images"][0]).unlink()


CATALOG_CASES = [
    catalog_case("catalog-remove-unknown-class", "remove", "{d}/cat", "red", "nope",
                 error="classes ['nope'] are not in catalog"),
    catalog_case("catalog-build-into-non-empty-folder", "build", "{d}/classes", "--out", "{d}/scenes",
                 "--model", "untrained", error="--out {d}/scenes already exists and is not empty"),
    catalog_case("catalog-build-into-a-catalog", "build", "{d}/classes", "--out", "{d}/cat", "--model", "untrained",
                 error="is an os2d catalog"),
    catalog_case("catalog-build-empty-class-name", "build", "{d}/classes", "--out", "{d}/new", "--model",
                 "untrained", setup=_folder_with("classes/__2.png"), error="gives an empty class name"),
    catalog_case("catalog-build-class-size-huge", "build", "{d}/classes", "--out", "{d}/new", "--class-size",
                 "100000", "--model", "untrained", error="invalid --class-size 100000"),
    catalog_case("catalog-build-missing-folder", "build", "{d}/nope", "--out", "{d}/new",
                 error="class image folder not found"),
    catalog_case("catalog-build-tiny-class-image", "build", "{d}/small", "--out", "{d}/new", "--model", "untrained",
                 setup=lambda f, a: ((f / "small").mkdir(), _tiny_class(f / "small", a)), error="too small"),
    catalog_case("catalog-add-another-model", "add", "{d}/cat", "--class", "x={d}/classes/red.png", "--model",
                 "default", error="does not fit this detector"),
    catalog_case("catalog-add-tiny-class-image", "add", "{d}/cat", "--class", "green={d}/classes/red.png",
                 "--class", "t={d}/tiny.png", "--model", "untrained", setup=_tiny_class, error="too small"),
    catalog_case("catalog-add-corrupt-class-image", "add", "{d}/cat", "--class", "x={d}/bad.png", "--model",
                 "untrained", setup=lambda f, a: gen.junk(f / "bad.png"), error="bad.png"),
    catalog_case("catalog-add-pair-without-image", "add", "{d}/cat", "--class", "x=", error="NAME=IMAGE"),
    catalog_case("catalog-info-not-a-catalog", "info", "{d}/classes", error="is not an os2d catalog"),
    catalog_case("catalog-info-index-not-json", "info", "{d}/cat",
                 setup=lambda f, a: (f / "cat" / "catalog.json").write_text("{not json"), error="is not valid JSON"),
    catalog_case("catalog-info-index-other-format-version", "info", "{d}/cat",
                 setup=lambda f, a: (f / "cat" / "catalog.json").write_text(
                     '{"format": "os2d-catalog", "format_version": 99}'), error="format version 99"),
    catalog_case("catalog-rebuild-class-images-missing", "rebuild", "{d}/cat", "--model", "default",
                 setup=_lose_last_class_image, error="class images of 'blue' are missing"),
    catalog_case("catalog-usage-missing-out", "build", "{d}/classes", error="Missing option '--out'"),
]

# ------------------------------------------------------------------------------------------ evaluate
def evaluate_case(id, *extra, setup=None, error="", **kw):
    def prepare(folder: Path, assets) -> None:
        gen.csv_dataset(folder / "data")
        (folder / "mine.json").write_text('{"precious": true}\n')
        if setup is not None:
            setup(folder, assets)

    return cli(id, "evaluate", "--dataset", "{d}/data/classes/ds.csv", "--split", "train", "--model", "untrained",
               *extra, setup=prepare, error=error, **kw)


EVALUATE_CASES = [
    evaluate_case("evaluate-scales-inf", "--scales", "inf", error="invalid --scales"),
    evaluate_case("evaluate-scales-nan", "--scales", "nan", error="got nan"),
    evaluate_case("evaluate-class-size-huge", "--class-size", "100000", error="invalid --class-size 100000"),
    evaluate_case("evaluate-base-size-zero", "--base-size", "0", error="--base-size must be between 32 and 4096"),
    evaluate_case("evaluate-threshold-nan", "--threshold", "nan", error="--threshold must be a number"),
    evaluate_case("evaluate-iou-zero", "--iou", "0", error="--iou must be in (0, 1]"),
    evaluate_case("evaluate-iou-nan", "--iou", "nan", error="--iou must be in (0, 1]"),
    evaluate_case("evaluate-max-images-zero", "--max-images", "0", error="--max-images must be at least 1"),
    evaluate_case("evaluate-usage-max-dets-abc", "--max-dets", "abc", error="--max-dets"),
    evaluate_case("evaluate-distractor-empty-class-name", "--distractors", "{d}/distractors",
                  setup=_folder_with("distractors/__2.png"), error="gives an empty class name"),
    evaluate_case("evaluate-json-exists", "--json", "{d}/mine.json", error="output file exists"),
    evaluate_case("evaluate-json-and-coco-same-file", "--json", "{d}/out.json", "--coco", "{d}/out.json",
                  error="must be different files"),
    evaluate_case("evaluate-detections-missing", "--detections", "{d}/nope.json", error="detections file not found"),
    evaluate_case("evaluate-dataset-missing", "--dataset", "{d}/nope.csv", error="nope.csv"),
]


CASES = (SYNTH_CASES + TRAIN_CASES + API_CASES + USAGE_CASES + FRESH_CASES + DETECT_CASES + CATALOG_CASES
         + EVALUATE_CASES)
