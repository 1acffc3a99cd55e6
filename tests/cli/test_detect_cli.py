"""End-to-end tests of ``os2d detect`` on real images."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import nms
from typer.testing import CliRunner

from shared_data import assert_same_detection_sets, shared_path
from os2d.cli.main import app, _register_commands
from os2d.model.checkpoint import build_model
from os2d.model.config import ModelConfig

_register_commands()
RUNNER = CliRunner()
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def ref(*parts):
    return shared_path("fixtures", "reference", *parts)


def run_cli(args):
    result = RUNNER.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def load_records(path):
    records = json.loads(path.read_text())
    names = sorted({r["class"] for r in records})
    labels = torch.tensor([names.index(r["class"]) for r in records])
    boxes = torch.tensor([r["bbox"] for r in records]).reshape(-1, 4)
    scores = torch.tensor([r["score"] for r in records])
    return boxes, scores, labels, names


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_detect_reproduces_reference_demo(tmp_path, variant):
    out = tmp_path / "dets.json"
    run_cli(["detect", "--image", str(ref("demo", "input_image.jpg")),
             "--class", f"c0={ref('demo', 'class_image_0.jpg')}", "--class", f"c1={ref('demo', 'class_image_1.jpg')}",
             "--model", str(ref(variant, f"checkpoint_{variant}.pth")), "--scales", "1500", "--resize-rule", "area",
             "--interpolation", "bicubic", "--threshold", "-inf", "--max-dets", "100000", "--json", str(out)])
    boxes, scores, labels, names = load_records(out)
    assert names == ["c0", "c1"]
    expected = json.loads(ref(variant, "detections.json").read_text())
    assert {r["image"] for r in json.loads(out.read_text())} == {"input_image.jpg"}
    assert_same_detection_sets(boxes, scores, labels, torch.tensor(expected["boxes_xyxy_original"]),
                               torch.tensor(expected["scores"]), torch.tensor(expected["labels"]))


def reference_style_pipeline(model, scene_path, class_paths, longer_sides, class_size=240):
    """The reference evaluation pipeline written independently with PIL/torchvision primitives."""
    scene = Image.open(scene_path).convert("RGB")
    tensors = []
    for path in class_paths:
        img = Image.open(path).convert("RGB")
        r = img.height / img.width
        size = (int(class_size / np.sqrt(r)), int(class_size * np.sqrt(r)))
        tensors.append(TF.normalize(TF.to_tensor(img.resize(size, Image.BILINEAR)), MEAN, STD))
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    per_class = {k: ([], []) for k in range(len(class_paths))}
    with torch.no_grad():
        for longer in longer_sides:
            s = longer / max(scene.size)
            w, h = int(scene.width * s + 0.5), int(scene.height * s + 0.5)
            x = TF.normalize(TF.to_tensor(scene.resize((w, h), Image.BILINEAR)), MEAN, STD)[None]
            out = model(x, tensors)
            fh, fw = out.scores.shape[-2:]
            cols, rows = torch.meshgrid(torch.arange(fw) * 16.0 + 8, torch.arange(fh) * 16.0 + 8, indexing="xy")
            anchors = torch.stack([cols - 120, rows - 120, cols + 120, rows + 120], -1).reshape(-1, 4)
            for k in per_class:
                codes = coder.encode_single(out.boxes[0, k].reshape(-1, 4), anchors)
                boxes = coder.decode_single(codes, anchors)
                boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
                boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
                keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                boxes = boxes[keep] * torch.tensor([scene.width / w, scene.height / h] * 2)
                per_class[k][0].append(boxes)
                per_class[k][1].append(out.scores[0, k].reshape(-1)[keep])
    all_boxes, all_scores, all_labels = [], [], []
    for k, (boxes, scores) in per_class.items():
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        keep = nms(boxes, scores, 0.3)
        all_boxes.append(boxes[keep])
        all_scores.append(scores[keep])
        all_labels.append(torch.full((len(keep),), k))
    return torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)


def reference_key(key):
    """Our state-dict key -> the reference implementation's key (inverse of the loader's mapping)."""
    if key.startswith("backbone."):
        return "net_feature_maps." + key[len("backbone."):]
    names = {"conv1": "conv.0", "bn1": "conv.1", "conv2": "conv.3", "bn2": "conv.4", "conv3": "linear"}
    module, param = key[len("head.transform_net."):].split(".", 1)
    return f"os2d_head_creator.aligner.parameter_regressor.{names[module]}.{param}"


@pytest.fixture(scope="module")
def resnet101_v2_checkpoint(tmp_path_factory):
    """A random ResNet-101 V2 model saved in the reference checkpoint format."""
    torch.manual_seed(3)
    model = build_model(ModelConfig(backbone="resnet101", backbone_weights=None, variant="v2"), seed=3)
    with torch.no_grad():
        model.head.transform_net.conv3.weight.normal_(0, 0.01)
    state = {reference_key(k): v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "resnet101_v2.pth"
    torch.save({"net": state, "optimizer": {}}, path)
    return path, model.eval()


def test_detect_matches_independent_pipeline_resnet101_pyramid(tmp_path, resnet101_v2_checkpoint):
    ckpt, model = resnet101_v2_checkpoint
    data = shared_path("data", "flickrlogos27")
    scene = data / "src" / "108232382.jpg"
    classes = [data / "classes" / "images" / "Citroen.jpg", data / "classes" / "images" / "Mini.jpg"]
    out = tmp_path / "dets.json"
    run_cli(["detect", "--image", str(scene), "--class", f"Citroen={classes[0]}", "--class", f"Mini={classes[1]}",
             "--model", str(ckpt), "--scales", "320,480", "--threshold", "-1", "--max-dets", "100000",
             "--json", str(out)])
    boxes, scores, labels, names = load_records(out)
    assert names == ["Citroen", "Mini"]
    ref_boxes, ref_scores, ref_labels = reference_style_pipeline(model, scene, classes, [320, 480])
    assert_same_detection_sets(boxes, scores, labels, ref_boxes, ref_scores, ref_labels)


def test_detect_v1_checkpoint_on_another_scene_and_pyramid(tmp_path):
    from os2d.model.checkpoint import load_reference_model

    model, _ = load_reference_model(ref("v1", "checkpoint_v1.pth"))
    data = shared_path("data", "flickrlogos27")
    scene = data / "src" / "1075391489.jpg"
    classes = [data / "classes" / "images" / "Nbc.jpg"]
    out = tmp_path / "dets.json"
    run_cli(["detect", "--image", str(scene), "--class", f"Nbc={classes[0]}", "--model", str(ref("v1", "checkpoint_v1.pth")),
             "--scales", "256,400", "--threshold", "-1", "--max-dets", "100000", "--json", str(out)])
    boxes, scores, labels, _ = load_records(out)
    ref_boxes, ref_scores, ref_labels = reference_style_pipeline(model, scene, classes, [256, 400])
    assert_same_detection_sets(boxes, scores, labels, ref_boxes, ref_scores, ref_labels)


def test_detect_example_draw_and_no_overwrite(tmp_path):
    out, png = tmp_path / "ex.json", tmp_path / "ex.png"
    run_cli(["detect", "--example", "--scales", "900", "--threshold", "-1", "--max-dets", "5", "--json", str(out),
             "--draw", str(png)])
    records = json.loads(out.read_text())
    assert len(records) == 5 and {r["class"] for r in records} <= {"fantasia-berry", "fantasia-choco"}
    assert all(r["bbox"][0] < r["bbox"][2] <= 685 and r["bbox"][1] < r["bbox"][3] <= 507 for r in records)
    drawn = Image.open(png)
    assert drawn.size == (685, 507)
    before = out.read_bytes()
    result = subprocess.run([sys.executable, "-m", "os2d", "detect", "--example", "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "exists" in result.stderr
    assert out.read_bytes() == before


def test_detect_says_when_nothing_scored_above_the_threshold():
    # the default model is unsure on the demo shelf (calibrated 0.03-0.06, README): at the default 0.25
    # nothing is shown, and the output says why and what to change
    quiet = run_cli(["detect", "--example", "--scales", "900"])
    assert "0 detections" in quiet.stdout
    hint = " ".join(quiet.stdout.split())
    assert "No detection scored above the threshold 0.25 (calibrated scores" in hint and "--threshold" in hint
    shown = run_cli(["detect", "--example", "--scales", "900", "--threshold", "0.001"])
    assert "No detection scored above" not in shown.stdout and "0 detections" not in shown.stdout


def test_detect_classes_folder_and_several_scenes(tmp_path):
    data = shared_path("data", "flickrlogos27")
    folder = tmp_path / "classes"
    folder.mkdir()
    for name, target in (("Google", "Google.jpg"), ("Google", "Google__2.png"), ("Puma", "Puma.jpg")):
        Image.open(data / "classes" / "images" / f"{name}.jpg").save(folder / target)
    scenes = [data / "src" / "108232382.jpg", data / "src" / "1075391489.jpg"]
    draw_dir = tmp_path / "drawn"
    out = tmp_path / "d.json"
    run_cli(["detect", "--image", str(scenes[0]), "--image", str(scenes[1]), "--classes", str(folder),
             "--scales", "400", "--threshold", "-1", "--max-dets", "3", "--json", str(out), "--draw", str(draw_dir)])
    records = json.loads(out.read_text())
    assert {r["image"] for r in records} == {s.name for s in scenes}
    assert {r["class"] for r in records} <= {"Google", "Puma"}
    assert sorted(p.name for p in draw_dir.iterdir()) == sorted(f"{s.stem}_detections.png" for s in scenes)


def _fail(args, tmp_path):
    result = subprocess.run([sys.executable, "-m", "os2d", "detect", *args], capture_output=True, text=True,
                            cwd=tmp_path)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("os2d: error:"), result.stderr
    return lines[0]


def test_bad_inputs_give_one_line_errors(tmp_path):
    demo = ref("demo")
    cls = f"c={demo / 'class_image_0.jpg'}"
    scene = str(demo / "input_image.jpg")
    assert "not found" in _fail(["--image", str(tmp_path / "missing.jpg"), "--class", cls], tmp_path)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    assert "corrupt" in _fail(["--image", str(corrupt), "--class", cls], tmp_path)
    assert "no class images" in _fail(["--image", scene], tmp_path)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (10, 40), "red").save(tiny)
    assert "too small" in _fail(["--image", scene, "--class", f"t={tiny}"], tmp_path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert "empty" in _fail(["--image", str(empty), "--class", cls], tmp_path)
    assert "unknown model" in _fail(["--image", scene, "--class", cls, "--model", "nonexistent"], tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(ref("v1", "checkpoint_v1.pth").read_bytes()[:1_000_000])
    assert "truncated" in _fail(["--image", scene, "--class", cls, "--model", str(truncated)], tmp_path)


def _reference_chunked_nms(boxes, scores, iou, max_batch=10000):
    """The reference's NMS written out independently: chunks of the current order, repeated."""
    ids = list(range(len(boxes)))
    while True:
        count = len(ids)
        chunks = [ids[i:i + max_batch] for i in range(0, count, max_batch)]
        survivors = []
        for chunk in chunks:
            idx = torch.tensor(chunk)
            survivors.extend(idx[nms(boxes[idx], scores[idx], iou)].tolist())
        ids = survivors
        if len(chunks) <= 1 or len(ids) == count:
            break
    ids = torch.tensor(ids)
    return ids[torch.sort(scores[ids], descending=True, stable=True).indices]


def reference_pyramid_from_base(model, scene_path, class_paths, base, factors, class_size=240):
    """The reference evaluation pipeline: resize to the base size, levels from that image, chunked NMS."""
    scene = Image.open(scene_path).convert("RGB")
    s = base / max(scene.size)
    base_img = scene.resize((int(scene.width * s + 0.5), int(scene.height * s + 0.5)), Image.BILINEAR)
    tensors = []
    for path in class_paths:
        img = Image.open(path).convert("RGB")
        r = img.height / img.width
        tensors.append(TF.normalize(TF.to_tensor(img.resize((int(class_size / np.sqrt(r)), int(class_size * np.sqrt(r))),
                                                            Image.BILINEAR)), MEAN, STD))
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    per_class = {k: ([], []) for k in range(len(class_paths))}
    with torch.no_grad():
        for f in factors:
            w, h = int(base_img.width * f), int(base_img.height * f)
            x = TF.normalize(TF.to_tensor(base_img.resize((w, h), Image.BILINEAR)), MEAN, STD)[None]
            out = model(x, tensors)
            fh, fw = out.scores.shape[-2:]
            cols, rows = torch.meshgrid(torch.arange(fw) * 16.0 + 8, torch.arange(fh) * 16.0 + 8, indexing="xy")
            anchors = torch.stack([cols - 120, rows - 120, cols + 120, rows + 120], -1).reshape(-1, 4)
            for k in per_class:
                boxes = coder.decode_single(coder.encode_single(out.boxes[0, k].reshape(-1, 4), anchors), anchors)
                boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
                boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
                keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                per_class[k][0].append(boxes[keep] * torch.tensor([scene.width / w, scene.height / h] * 2))
                per_class[k][1].append(out.scores[0, k].reshape(-1)[keep])
    out_boxes, out_scores, out_labels, counts = [], [], [], []
    for k, (boxes, scores) in per_class.items():
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        counts.append(len(boxes))
        keep = _reference_chunked_nms(boxes, scores, 0.3)
        out_boxes.append(boxes[keep]), out_scores.append(scores[keep]), out_labels.append(torch.full((len(keep),), k))
    return torch.cat(out_boxes), torch.cat(out_scores), torch.cat(out_labels), counts


def test_reference_options_reproduce_the_reference_evaluation_pipeline(tmp_path):
    """--pyramid-from base and --nms-mode reference against the reference pipeline written independently,
    with more than 10,000 candidates per class (the reference NMS works in chunks of 10,000)."""
    from os2d.model.checkpoint import load_reference_model

    model, _ = load_reference_model(ref("v1", "checkpoint_v1.pth"))
    data = shared_path("data", "flickrlogos27")
    scene = data / "src" / "108232382.jpg"
    classes = [data / "classes" / "images" / "Citroen.jpg", data / "classes" / "images" / "Mini.jpg"]
    out = tmp_path / "dets.json"
    run_cli(["detect", "--image", str(scene), "--class", f"Citroen={classes[0]}", "--class", f"Mini={classes[1]}",
             "--model", str(ref("v1", "checkpoint_v1.pth")), "--base-size", "720", "--pyramid", "paper",
             "--pyramid-from", "base", "--nms-mode", "reference", "--threshold", "-inf", "--max-dets", "100000",
             "--threads", "1", "--json", str(out)])
    boxes, scores, labels, names = load_records(out)
    factors = (0.5, 0.625, 0.8, 1.0, 1.2, 1.4, 1.6)
    ref_boxes, ref_scores, ref_labels, counts = reference_pyramid_from_base(model, scene, classes, 720, factors)
    assert min(counts) > 10000  # the chunked NMS really runs in several chunks
    assert_same_detection_sets(boxes, scores, labels, ref_boxes, ref_scores, ref_labels)
