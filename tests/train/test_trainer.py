"""Training: config errors, the detached-transform rule, overfitting, exact resume, NaN stop, CLI."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
import yaml

from shared_data import PROJECT_ROOT, shared_path
from os2d.model.checkpoint import build_model, load_own_model
from os2d.model.config import ModelConfig
from os2d.train import objective
from os2d.train.batching import PatchSpec, TrainBatch
from os2d.train.checkpointing import load_checkpoint
from os2d.train.config import LossSection, TrainConfig, load_config
from os2d.train.losses import LossOutput
from os2d.train.objective import TrainFeatures, compute_batch_loss
from os2d.train.trainer import NonFiniteLossError, Trainer, train

TIME_COLUMNS = ("time_data", "time_step", "elapsed")


def tiny_overrides(**extra) -> list:
    flickr = shared_path("data", "flickrlogos27")
    base = {
        "data.train": f"[{{path: {flickr}, split: train, max_images: 3}}]",
        "data.val": f"{{path: {flickr}, split: val-new-cl, max_images: 2}}",
        "batch.patch_size": 256, "batch.batch_size": 2, "batch.class_batch": 3,
        "batch.object_scale": "[0.8, 1.2]", "optim.lr": 0.001, "optim.iterations": 4,
        "eval.at_start": "false", "eval.at_end": "false", "eval.scales": "[256]", "checkpoint.every": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def tiny_config(**extra) -> TrainConfig:
    return load_config(None, tiny_overrides(**extra))


# ------------------------------------------------------------------------------------- config
def test_unknown_keys_are_errors_with_a_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown setting 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        load_config(path)
    with pytest.raises(ValueError, match="did you mean 'train_backbone'"):
        load_config(None, ["trian_backbone=all"])
    with pytest.raises(ValueError, match="batch.patch_size must be an integer"):
        load_config(None, ["batch.patch_size=big"])
    with pytest.raises(ValueError, match="train_backbone='some'"):
        load_config(None, ["train_backbone=some"])


def test_overrides_and_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["optim.lr_steps=[10, 20]", "loss.kind=contrastive", "data.train=[{path: x, weight: 2}]",
                             "data.train[0].split=train"])
    assert cfg.optim.lr_steps == [10, 20] and cfg.loss.kind == "contrastive"
    assert cfg.data.train[0].path == "x" and cfg.data.train[0].split == "train" and cfg.data.train[0].weight == 2.0
    path = tmp_path / "round.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


def test_shipped_configs_load():
    files = sorted((PROJECT_ROOT / "configs").glob("*.yaml"))
    assert files, "no configs/*.yaml"
    for path in files:
        cfg = load_config(path)
        assert cfg.data.train, path


# ------------------------------------------------------------------------------------- objective
def _manual_batch(with_positive: bool) -> TrainBatch:
    gen = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 240.0, 240.0]]) if with_positive else torch.zeros(0, 4)
    labels = torch.tensor([0]) if with_positive else torch.zeros(0, dtype=torch.long)
    return TrainBatch(
        images=torch.randn(1, 3, 256, 256, generator=gen), class_keys=[(0, "a"), (0, "b")],
        class_images=[torch.randn(3, 64, 64, generator=gen) for _ in range(2)],
        class_image_ids=[(0, "a", 0), (0, "b", 0)], gt_boxes=[boxes], gt_labels=[labels],
        gt_difficult=[torch.zeros(len(labels), dtype=torch.bool)], specs=[PatchSpec(0, 0, 1.0, 0, 0)],
        num_positive_classes=int(with_positive))


def _transform_grad(model, batch, cfg) -> float:
    features = TrainFeatures(model, "none")
    features.set_train_mode()
    model.zero_grad(set_to_none=True)
    result = compute_batch_loss(features, batch, cfg)
    result.loss.total.backward()
    grads = [p.grad for p in model.head.transform_net.parameters()]
    return sum(0.0 if g is None else float(g.abs().sum()) for g in grads), result


def test_transform_net_learns_from_positives_only(monkeypatch):
    model = build_model(ModelConfig())
    model.head.sample_dtype = torch.float32
    cfg = LossSection(kind="rll", neg_margin=-1.0)  # every negative is active
    grad, result = _transform_grad(model, _manual_batch(False), cfg)
    assert result.loss.num_pos == 0 and result.loss.extras["num_active_neg"] > 0
    assert grad == 0.0
    grad, result = _transform_grad(model, _manual_batch(True), cfg)
    assert result.loss.num_pos > 0 and grad > 0
    # without the detached scores the same negatives-only batch would train TransformNet
    real = objective.os2d_loss
    monkeypatch.setattr(objective, "os2d_loss", lambda *a, **k: real(*a, **{**k, "scores_for_negatives": None}))
    grad, _ = _transform_grad(model, _manual_batch(False), cfg)
    assert grad > 0


def test_last_blocks_trains_only_the_last_stage():
    model = build_model(ModelConfig())
    model.head.sample_dtype = torch.float32
    features = TrainFeatures(model, "last_blocks", last_blocks=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("head.", "backbone.stages.4.")) for n in trainable)
    assert any(n.startswith("backbone.stages.4.") for n in trainable)
    features.set_train_mode()
    result = compute_batch_loss(features, _manual_batch(True), LossSection(neg_margin=-1.0))
    result.loss.total.backward()
    grad = model.backbone.stages[4][0].expand.conv.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    assert model.backbone.stem.conv.weight.grad is None and model.backbone.stages[3][0].expand.conv.weight.grad is None
    assert set(features.cache) == {(0, "a", 0), (0, "b", 0)}
    with torch.no_grad():  # the split forward equals the plain backbone
        x = torch.randn(1, 3, 64, 64)
        assert torch.allclose(features.raw_features(x), model.backbone(x), atol=1e-5)


# ------------------------------------------------------------------------------------- training
def test_overfits_one_batch_of_real_crops(tmp_path):
    trainer = Trainer(tiny_config(), tmp_path / "run", progress=False)
    trainer.features.set_train_mode()
    fixed = trainer.sampler.batch(0)
    assert fixed.num_positive_classes >= 1 and len(fixed.class_keys) <= 3
    trainer.sampler.batch = lambda i: fixed
    losses = [trainer.train_step(i)["total"] for i in range(16)]
    assert min(losses[-3:]) < 0.7 * losses[0], losses


def _log(path: Path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(f)]


def test_resume_is_exact_even_after_a_kill(tmp_path, monkeypatch):
    overrides = {"eval.every": 2, "batch.hard_patch_mining": "true", "batch.hard_prob": 0.5}
    full = train(tiny_config(**overrides), tmp_path / "a", progress=False)
    assert full["iterations"] == 4
    train(tiny_config(**overrides, **{"optim.iterations": 2}), tmp_path / "b", progress=False)
    # resume to 4, but the process "dies" during iteration 4 (after the log row of iteration 3)
    real_step = Trainer.train_step

    def dying_step(self, iteration):
        if iteration == 3:
            raise KeyboardInterrupt
        return real_step(self, iteration)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(**overrides), tmp_path / "b", resume=True, progress=False)
    assert len(_log(tmp_path / "b" / "train_log.csv")) == 3 and load_checkpoint(tmp_path / "b")["iteration"] == 2
    monkeypatch.setattr(Trainer, "train_step", real_step)
    train(tiny_config(**overrides), tmp_path / "b", resume=True, progress=False)

    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert _log(tmp_path / "a" / "train_log.csv") == _log(tmp_path / "b" / "train_log.csv")
    val_a = [{k: v for k, v in r.items() if k != "time"} for r in _log(tmp_path / "a" / "val_log.csv")]
    val_b = [{k: v for k, v in r.items() if k != "time"} for r in _log(tmp_path / "b" / "val_log.csv")]
    assert val_a == val_b and [r["iteration"] for r in val_a] == ["2", "4"]
    model, config = load_own_model(tmp_path / "a" / "best")
    assert config.backbone == "efficientnet-lite0" and "best val mAP" in config.description


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = objective.os2d_loss
    calls = []

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            nan = out.total * float("nan")
            return LossOutput(total=nan, recognition=out.recognition, localization=out.localization,
                              num_pos=out.num_pos, extras=out.extras)
        return out

    monkeypatch.setattr(objective, "os2d_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* at iteration 3; .*checkpoint is kept: .*checkpoint.pt"):
        train(tiny_config(), run, progress=False)
    assert load_checkpoint(run)["iteration"] == 2
    assert len(_log(run / "train_log.csv")) == 2


def test_cli_train_resume_and_errors(tmp_path, monkeypatch, capsys):
    from os2d.cli.main import main

    config = tmp_path / "tiny.yaml"
    tree: dict = {}
    for item in tiny_overrides(**{"optim.iterations": 2, "eval.at_end": "true", "batch.patch_size": 160}):
        key, _, value = item.partition("=")
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    config.write_text(yaml.safe_dump(tree))
    run = tmp_path / "run"

    def cli(*args) -> int:
        monkeypatch.setattr(sys, "argv", ["os2d", *args])
        with pytest.raises(SystemExit) as exc:
            main()
            raise SystemExit(0)
        return exc.value.code

    assert cli("train", "--config", str(config), "--out", str(run), "--no-progress", "-q") == 0
    assert len(_log(run / "train_log.csv")) == 2
    for name in ("config.yaml", "checkpoint.pt", "val_log.csv", "best/config.json", "last/weights.safetensors",
                 "summary.json"):
        assert (run / name).is_file(), name
    assert cli("train", "--out", str(run), "--resume", "--set", "optim.iterations=3", "-q") == 0
    assert len(_log(run / "train_log.csv")) == 3
    capsys.readouterr()
    assert cli("train", "--config", str(config), "--out", str(run), "-q") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert cli("train", "--config", str(config), "--out", str(tmp_path / "x"), "--set", "optim.lrr=1") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'optim.lr'" in err


def test_training_from_the_calibrated_default_validates_and_exports_raw_scores(tmp_path):
    """The shipped model carries calibration data for its own weights only: a run started from it
    validates the network (raw scores, no one-label) and exports a model that loads without them."""
    out = tmp_path / "run"
    train(tiny_config(**{"model.init": "default", "optim.iterations": 2, "eval.at_end": "true"}), out,
          progress=False)
    model, config = load_own_model(out / "best")
    assert config.scores == "raw"
    from os2d.detector import Detector

    assert Detector(model, config).settings.scores == "raw"
