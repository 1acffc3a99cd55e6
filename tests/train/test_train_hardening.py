"""Issue 11 regressions for training: weights-only checkpoints (no code execution on --resume),
non-finite values caught before they crash, stale temporaries, init conflicts, config errors."""
from __future__ import annotations

import pathlib
import random

import numpy as np
import pytest
import torch

from shared_data import shared_path
from os2d.errors import InvalidInputError, UserError
from os2d.model.checkpoint import build_model, save_model
from os2d.model.config import ModelConfig
from os2d.train.checkpointing import (
    CHECKPOINT_FILE,
    capture_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
)
from os2d.train.config import load_config
from os2d.train.finite import FiniteGuard, NonFiniteValue
from os2d.train.trainer import NonFiniteLossError, Trainer, train


def tiny_overrides(**extra) -> list:
    flickr = shared_path("data", "flickrlogos27")
    base = {
        "data.train": f"[{{path: {flickr}, split: train, max_images: 3}}]",
        "batch.patch_size": 256, "batch.batch_size": 2, "batch.class_batch": 3,
        "batch.object_scale": "[0.8, 1.2]", "optim.lr": 0.001, "optim.iterations": 2,
        "eval.at_start": "false", "eval.at_end": "false", "checkpoint.every": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


class _Touch:
    """Unpickling this calls ``Path.touch(marker)``: stands for arbitrary code in a crafted file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ------------------------------------------------------------------------------ checkpoints
def test_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "os2d-train-checkpoint", "payload": _Touch(marker)}, run / CHECKPOINT_FILE)
    with pytest.raises(InvalidInputError, match=r"is not a plain tensor checkpoint and was not loaded") as info:
        load_checkpoint(run)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    assert not marker.exists()


def test_checkpoint_with_wrong_layout_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "os2d-train-checkpoint", "format_version": 2, "iteration": 3}, run / CHECKPOINT_FILE)
    with pytest.raises(InvalidInputError, match="is damaged: 'model' is not a dict of tensors"):
        load_checkpoint(run)
    (run / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(InvalidInputError, match="corrupt, truncated or not a PyTorch file"):
        load_checkpoint(run)


def test_rng_state_is_plain_and_round_trips(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item()) == expected


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    stale = [run / ".checkpoint.pt.k3j2.tmp", run / "best" / ".weights.safetensors.a1.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    keep = [run / "notes.tmp", run / ".hidden"]
    for path in keep:
        path.write_text("mine")
    assert sorted(remove_stale_temporaries(run)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    (run / ".checkpoint.pt.zz.tmp").write_bytes(b"x")
    train(load_config(None, tiny_overrides(**{"optim.iterations": 1})), run, progress=False)
    assert not (run / ".checkpoint.pt.zz.tmp").exists() and load_checkpoint(run)["iteration"] == 1


# ------------------------------------------------------------------------------ non-finite values
def test_huge_learning_rate_stops_cleanly_keeping_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    config = load_config(None, tiny_overrides(**{"optim.lr": "1e30", "optim.iterations": 6}))
    with pytest.raises(NonFiniteLossError, match=r"(non-finite|diverged).* at iteration \d; training stopped") as info:
        train(config, run, progress=False)
    assert isinstance(info.value, UserError)
    failed_at = int(str(info.value).split("at iteration ")[1].split(";")[0])
    if failed_at > 1:
        assert load_checkpoint(run)["iteration"] == failed_at - 1


def test_guard_stops_the_forward_pass_at_an_exploded_transform():
    model = build_model(ModelConfig(backbone_weights=None))
    with torch.no_grad():
        model.head.transform_net.conv3.bias.fill_(1e6)  # "finite" but exploded parameters
    scene = torch.nn.functional.normalize(torch.randn(1, 112, 6, 6), dim=1)
    klass = torch.nn.functional.normalize(torch.randn(1, 112, 15, 15), dim=1)
    guard = FiniteGuard(model)
    with guard.active(), pytest.raises(NonFiniteValue, match=r"TransformNet output has values up to 1e\+06"):
        model.head(scene, klass)
    with guard.active(), pytest.raises(NonFiniteValue, match="head input 0"):
        model.head(scene * float("nan"), klass)
    model.head(scene, klass)  # outside a training step the hooks are gone


def test_nan_parameter_after_a_step_is_caught(tmp_path, monkeypatch):
    trainer = Trainer(load_config(None, tiny_overrides()), tmp_path / "run", progress=False)
    real_step = trainer.optimizer.step

    def poisoned_step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        with torch.no_grad():
            trainer.params[0].view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(trainer.optimizer, "step", poisoned_step)
    trainer.features.set_train_mode()
    with pytest.raises(NonFiniteLossError, match=r"parameter head\..* \(1 non-finite values of \d+\) after the step"):
        trainer.train_step(0)


# ------------------------------------------------------------------------------ init and resume
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    save_model(build_model(ModelConfig()), ModelConfig(), folder)
    return folder


def test_settings_ignored_by_a_saved_init_are_refused(tmp_path, saved_model):
    for setting, shown in (("model.backbone=resnet50", "model.backbone='resnet50' but the model has "
                            "'efficientnet-lite0'"), ("model.variant=v2", "model.variant='v2' but"),
                           ("model.backbone_weights=/tmp/w.pth", "model.backbone_weights='/tmp/w.pth' does not apply")):
        config = load_config(None, tiny_overrides(**{"model.init": str(saved_model)}) + [setting])
        with pytest.raises(InvalidInputError, match=shown.replace("(", r"\(")):
            Trainer(config, tmp_path / "run", progress=False)
    same = load_config(None, tiny_overrides(**{"model.init": str(saved_model), "model.backbone": "efficientnet-lite0"}))
    trainer = Trainer(same, tmp_path / "run", progress=False)
    assert trainer.config.model.variant == "v1"  # the effective architecture is recorded


def test_resume_with_a_changed_model_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    train(load_config(None, tiny_overrides(**{"optim.iterations": 1})), run, progress=False)
    changed = load_config(None, tiny_overrides(**{"model.variant": "v2"}))
    with pytest.raises(InvalidInputError, match="does not fit this run's config"):
        train(changed, run, resume=True, progress=False)


# ------------------------------------------------------------------------------ config files
@pytest.mark.parametrize("text, message", [
    ("batch:\n  patch_size: [600]\n", "batch.patch_size must be an integer, got [600]"),
    ("optim: {lr: fast}\n", "optim.lr must be a number, got 'fast'"),
    ("optim: {lr: .nan}\n", "optim.lr must be a finite number"),
    ("data: {train: [{path: x, weight: -1}]}\n", "data.train[0].weight=-1: input should be greater than 0"),
    ("eval: {scales: [100000]}\n", "eval.scales=[100000] must be a non-empty list of pixel sizes in [32, 4096]"),
    ("device: gpu\n", "device='gpu' must be cpu, cuda, cuda:N or mps"),
    ("batch: {class_size: 100000}\n", "batch.class_size=100000: input should be less than or equal to 1024"),
    ("optim: [1, 2]\n", "optim must be a mapping, got [1, 2]"),
    ("optim: {lr: 0.1\n", "is not valid YAML"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value) and "\n" not in str(info.value)


def test_config_file_that_is_not_text_or_not_a_file(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInputError, match="is not UTF-8 text"):
        load_config(binary)
    with pytest.raises(InvalidInputError, match="is not a regular file"):
        load_config(tmp_path)


def test_numbers_written_as_yaml_strings_are_numbers():
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == pytest.approx(1e-3)


def test_format_1_checkpoint_of_an_earlier_os2d_still_resumes(tmp_path):
    run = tmp_path / "run"
    train(load_config(None, tiny_overrides(**{"optim.iterations": 1, "optim.lr_steps": "[5]"})), run, progress=False)
    blob = load_checkpoint(run)
    assert isinstance(blob["scheduler"]["milestones"], __import__("collections").Counter)
    random.seed(4)
    np.random.seed(5)
    legacy = dict(blob, format_version=1, rng={"python": random.getstate(), "numpy": np.random.get_state(),
                                               "torch": torch.get_rng_state()})
    legacy["scheduler"] = dict(blob["scheduler"], milestones=dict(blob["scheduler"]["milestones"]))
    torch.save(legacy, run / CHECKPOINT_FILE)  # as os2d 0.1 wrote it: NumPy arrays inside
    upgraded = load_checkpoint(run)
    assert upgraded["format_version"] == 2 and upgraded["rng"]["numpy"]["keys"].dtype == torch.int64
    restore_rng_state(upgraded["rng"])
    assert np.random.rand() == np.random.RandomState(5).rand()
    summary = train(load_config(None, tiny_overrides(**{"optim.iterations": 2, "optim.lr_steps": "[5]"})), run,
                    resume=True, progress=False)
    assert summary["iterations"] == 2
