"""The training loop: SGD on random patches, periodic validation, checkpoints, exact resume.

Files written to the run folder ``RUN_DIR``:

* ``config.yaml`` -- the full effective :class:`~os2d.train.config.TrainConfig`;
* ``checkpoint.pt`` -- the latest checkpoint (atomic; every ``checkpoint.every`` iterations);
* ``train_log.csv`` -- one row per iteration (losses, lr, gradient norm, times);
* ``val_log.csv`` and ``val/iter_XXXXXXX.json`` -- validation mAP and full results;
* ``best/`` -- the model with the best validation mAP (``save_model`` format), ``last/`` -- the
  final model.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from os2d.data.datasets import Dataset, resolve_dataset
from os2d.errors import InvalidInputError
from os2d.fileio import atomic_write_text
from os2d.model.checkpoint import build_model, save_model
from os2d.model.config import ModelConfig
from os2d.model.os2d import OS2DModel
from os2d.train.batching import BatchSampler
from os2d.train.checkpointing import (
    CHECKPOINT_FILE,
    CsvLog,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    save_checkpoint,
)
from os2d.train.config import (
    DEFAULT_BACKBONE,
    DEFAULT_BACKBONE_WEIGHTS,
    DEFAULT_VARIANT,
    DatasetSpec,
    OptimSection,
    TrainConfig,
)
from os2d.train.finite import (
    FiniteGuard,
    NonFiniteLossError,
    NonFiniteValue,
    first_nonfinite_parameter,
)
from os2d.train.objective import TrainFeatures, compute_batch_loss

logger = logging.getLogger(__name__)

TRAIN_COLUMNS = ("iteration", "total", "recognition", "localization", "num_pos", "num_loc_pos", "num_classes",
                 "grad_norm", "lr", "time_data", "time_step", "elapsed")
VAL_COLUMNS = ("iteration", "map", "map_weighted", "recall", "num_detections", "num_images", "time")


# ---------------------------------------------------------------------------------------- setup
def open_dataset(spec: DatasetSpec, data_root: Optional[str], *, exclude_other_splits: bool = False) -> Dataset:
    """A dataset from a spec; with ``exclude_other_splits`` scenes holding boxes of another split
    are dropped (no image of a held-out split is ever used for training)."""
    root = Path(data_root) if data_root else None
    dataset = resolve_dataset(spec.path, data_root=root, split=spec.split)
    if spec.split and exclude_other_splits:
        full = resolve_dataset(spec.path, data_root=root)
        other = {r.file_name for r in full.images if any(s and s != spec.split for s in r.splits)}
        kept = [r.file_name for r in dataset.images if r.file_name not in other]
        if len(kept) < len(dataset.images):
            logger.warning("%s: dropping %d scenes that also hold boxes of other splits",
                           dataset.name, len(dataset.images) - len(kept))
            dataset = dataset.subset(file_names=kept)
    if spec.max_images is not None and spec.max_images < len(dataset.images):
        dataset = dataset.subset(file_names=[r.file_name for r in dataset.images[:spec.max_images]])
    return dataset


def load_datasets(config: TrainConfig) -> Tuple[List[Dataset], List[float], Optional[Dataset]]:
    """Training datasets (with their sampling weights) and the validation dataset."""
    if not config.data.train:
        raise InvalidInputError("train config: data.train lists no training dataset")
    train = [open_dataset(s, config.data.data_root, exclude_other_splits=True) for s in config.data.train]
    val = None
    if config.data.val is not None and config.data.val.path:
        val = open_dataset(config.data.val, config.data.data_root)
        if config.data.val.max_images is None and config.eval.max_images is not None \
                and config.eval.max_images < len(val.images):
            rng = np.random.default_rng(0)
            pick = np.sort(rng.choice(len(val.images), size=config.eval.max_images, replace=False))
            val = val.subset(file_names=[val.images[i].file_name for i in pick])
        shared = sorted(set(val.class_names) & {c for d in train for c in d.class_names})
        if shared:
            logger.warning("validation classes also used for training: %s", shared[:10])
    for d in train:
        logger.info("training dataset %s: %d scenes, %d boxes, %d classes", d.name, len(d), d.num_boxes,
                    len(d.class_names))
    return train, [s.weight for s in config.data.train], val


def init_model(config: TrainConfig) -> Tuple[OS2DModel, ModelConfig]:
    """The model to train: a fresh one (``model.init: untrained``) or a saved model.

    With a saved model, its architecture is used: ``model.backbone`` / ``model.variant`` must be
    unset or equal to the saved model's, and ``model.backbone_weights`` must keep its default
    (the weights come from the saved model); anything else is refused, never silently ignored.
    """
    m = config.model
    if m.init == "untrained":
        model_config = ModelConfig(backbone=m.backbone or DEFAULT_BACKBONE, variant=m.variant or DEFAULT_VARIANT,
                                   backbone_weights=m.backbone_weights)
        return build_model(model_config, seed=m.seed), model_config
    from os2d.zoo import load_model

    model, model_config = load_model(m.init)
    conflicts = [f"model.{key}={getattr(m, key)!r} but the model has {getattr(model_config, key)!r}"
                 for key in ("backbone", "variant")
                 if getattr(m, key) is not None and getattr(m, key) != getattr(model_config, key)]
    if m.backbone_weights != DEFAULT_BACKBONE_WEIGHTS:
        conflicts.append(f"model.backbone_weights={m.backbone_weights!r} does not apply (the weights come "
                         f"from the model)")
    if conflicts:
        raise InvalidInputError(f"train config: model.init={m.init!r} is a saved model, and "
                                f"{'; '.join(conflicts)}; remove these settings or use model.init: untrained")
    # the saved model's calibration describes its old weights: the trained model has none until refitted
    return model, replace(model_config, scores="raw")


def build_optimizer(params, cfg: OptimSection):
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_steps), gamma=cfg.lr_gamma)
    return optimizer, scheduler


# ---------------------------------------------------------------------------------------- trainer
class Trainer:
    """Runs (or resumes) one training run in ``run_dir``; see the module docstring for its files.

    Args:
        config: the training config.
        run_dir: output folder (created; must not hold a checkpoint unless ``resume``).
        resume: continue from ``run_dir/checkpoint.pt`` exactly where it stopped.
        progress: tqdm bar (default: when stderr is a terminal).
    """

    def __init__(self, config: TrainConfig, run_dir: Union[str, Path], *, resume: bool = False,
                 progress: Optional[bool] = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = sys.stderr.isatty() if progress is None else progress
        if not resume and (self.run_dir / CHECKPOINT_FILE).exists():
            raise InvalidInputError(f"{self.run_dir} already holds a training run; use --resume or another --out")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.model, self.model_config = init_model(config)
        # the effective architecture goes into RUN_DIR/config.yaml (so --resume rebuilds the same)
        self.config = config = config.model_copy(update={"model": config.model.model_copy(update={
            "backbone": self.model_config.backbone, "variant": self.model_config.variant})})
        self.model.head.sample_dtype = torch.float32  # float64 is only for reference parity
        self.model.to(self.device)
        self.features = TrainFeatures(self.model, config.train_backbone, config.last_blocks)
        self.params = self.features.trainable_parameters()
        trainable = {id(p) for p in self.params}
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if id(p) in trainable]
        self.guard = FiniteGuard(self.model)
        if not self.params:
            raise InvalidInputError("nothing to train: the model has no trainable parameters")
        self.optimizer, self.scheduler = build_optimizer(self.params, config.optim)
        train_sets, weights, self.val_dataset = load_datasets(config)
        backbone = self.model.backbone
        self.sampler = BatchSampler(train_sets, weights, config.batch, anchor_size=self.model.head.anchor_size,
                                    pixel_mean=backbone.pixel_mean, pixel_std=backbone.pixel_std, seed=config.seed)
        self.train_log = CsvLog(self.run_dir / "train_log.csv", TRAIN_COLUMNS)
        self.val_log = CsvLog(self.run_dir / "val_log.csv", VAL_COLUMNS)
        self.iteration = 0
        self.best_map = -math.inf
        self.best_iteration: Optional[int] = None
        self.elapsed = 0.0

    # ------------------------------------------------------------------ state
    def _state_extra(self) -> dict:
        return {"best_map": self.best_map, "best_iteration": self.best_iteration, "elapsed": self.elapsed}

    def save(self) -> Path:
        sampler_state = self.sampler.pool.state_dict() if self.sampler.pool is not None else None
        return save_checkpoint(self.run_dir, iteration=self.iteration, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, sampler_state=sampler_state, extra=self._state_extra())

    def _restore(self) -> None:
        blob = load_checkpoint(self.run_dir)
        try:
            self.model.load_state_dict(blob["model"])
            self.optimizer.load_state_dict(blob["optimizer"])
            self.scheduler.load_state_dict(blob["scheduler"])
            if self.sampler.pool is not None and blob.get("sampler"):
                self.sampler.pool.load_state_dict(blob["sampler"])
            restore_rng_state(blob["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
            raise InvalidInputError(
                f"training checkpoint {self.run_dir / CHECKPOINT_FILE} does not fit this run's config "
                f"(changed model or optimizer settings?): {' '.join(str(err).split())[:300]}") from err
        self.iteration = blob["iteration"]
        extra = blob.get("extra", {})
        self.best_map = float(extra.get("best_map", -math.inf))
        self.best_iteration = extra.get("best_iteration")
        self.elapsed = float(extra.get("elapsed", 0.0))
        self.train_log.truncate_after(self.iteration)
        self.val_log.truncate_after(self.iteration)
        logger.info("resumed %s at iteration %d", self.run_dir, self.iteration)

    # ------------------------------------------------------------------ steps
    def train_step(self, iteration: int) -> Dict[str, float]:
        """One optimizer step on batch ``iteration``; returns the logged values.

        Raises :class:`NonFiniteLossError` as soon as an activation, the loss, the gradient or a
        parameter is not finite (before the optimizer applies a bad step).
        """
        t0 = time.perf_counter()
        batch = self.sampler.batch(iteration)
        t1 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        mining = self.sampler.pool is not None
        try:
            with self.guard.active():
                result = compute_batch_loss(self.features, batch, self.config.loss, device=self.device,
                                            per_patch=mining)
        except NonFiniteValue as err:
            raise NonFiniteLossError(self._nonfinite_message(iteration, f"diverged: {err}")) from None
        values = result.as_floats()
        if not all(math.isfinite(v) for v in values.values()):
            raise NonFiniteLossError(self._nonfinite_message(iteration, f"non-finite loss {values}"))
        result.loss.total.backward()
        max_norm = self.config.optim.grad_clip if self.config.optim.grad_clip else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(self._nonfinite_message(iteration, f"non-finite gradient norm {grad_norm}"))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        bad = first_nonfinite_parameter(self.named_params)
        if bad:
            raise NonFiniteLossError(self._nonfinite_message(iteration, f"non-finite parameter {bad} after the step"))
        self.scheduler.step()
        if mining:
            self.sampler.record_losses(batch.specs, result.patch_losses)
        t2 = time.perf_counter()
        self.elapsed += t2 - t0
        values.update(iteration=iteration + 1, num_classes=len(batch.class_keys), grad_norm=grad_norm, lr=lr,
                      time_data=t1 - t0, time_step=t2 - t1, elapsed=self.elapsed)
        return values

    def _nonfinite_message(self, iteration: int, what: str) -> str:
        ckpt = self.run_dir / CHECKPOINT_FILE
        kept = f"the last good checkpoint is kept: {ckpt}" if ckpt.exists() else "no checkpoint was written yet"
        return (f"{what} at iteration {iteration + 1}; training stopped ({kept}). "
                f"Lower optim.lr or set optim.grad_clip, then --resume (with --set optim.lr=...).")

    # ------------------------------------------------------------------ validation
    def evaluate(self) -> Optional[dict]:
        """Validation mAP of the current model (Detector with the ``eval`` settings); logs and
        exports ``best/`` when it improves."""
        if self.val_dataset is None:
            return None
        from os2d.detector import Detector
        from os2d.eval.evaluate import evaluate_detections, run_detector_on_dataset

        e = self.config.eval
        t0 = time.perf_counter()
        settings = dict(score_threshold=e.score_threshold, nms_iou=e.nms_iou, max_detections=e.max_detections,
                        class_batch=e.class_batch, class_size=self.config.batch.class_size,
                        scores="raw", one_label=False)  # the network itself, whatever the model's defaults
        if e.scales:
            settings["scales"] = list(e.scales)
        try:
            detector = Detector(self.model, self.model_config, device=self.device, **settings)
            ds = self.val_dataset
            bank = detector.prepare_classes({c: ds.class_images[c] for c in ds.class_names})
            records = run_detector_on_dataset(ds, lambda path: detector.detect(path, bank), progress=False)
            result = evaluate_detections(ds, records, iou_thresh=e.iou_thresh)
        finally:
            self.features.set_train_mode()
        result["iteration"] = self.iteration
        result["time"] = time.perf_counter() - t0
        (self.run_dir / "val").mkdir(exist_ok=True)
        atomic_write_text(self.run_dir / "val" / f"iter_{self.iteration:07d}.json", json.dumps(result, indent=1))
        self.val_log.append({k: result.get(k) for k in VAL_COLUMNS})
        value = result["map"] if result["map"] is not None else -math.inf
        logger.info("iteration %d: val mAP %.4f (%d images, %.0f s)", self.iteration, value,
                    result["num_images"], result["time"])
        if value > self.best_map:
            self.best_map, self.best_iteration = value, self.iteration
            self.export(self.run_dir / "best", note=f"best val mAP {value:.4f}")
        return result

    def export(self, directory: Path, *, note: str = "") -> Path:
        """Save the current model with ``save_model`` (+ ``train_info.json``)."""
        config = replace(self.model_config, description=f"os2d train: iteration {self.iteration}. {note}".strip(),
                         class_size=self.config.batch.class_size)
        save_model(self.model, config, directory)
        atomic_write_text(Path(directory) / "train_info.json", json.dumps(
            {"iteration": self.iteration, "note": note, "run_dir": str(self.run_dir)}, indent=1))
        return Path(directory)

    # ------------------------------------------------------------------ loop
    def run(self) -> dict:
        """Train up to ``optim.iterations``; returns a summary dict."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir)
        if self.resume:
            self._restore()
        else:  # logs of an earlier attempt that died before its first checkpoint
            for log in (self.train_log, self.val_log):
                log.path.unlink(missing_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", cfg.to_yaml())
        self.features.set_train_mode()
        total = cfg.optim.iterations
        if self.iteration == 0 and cfg.eval.at_start and total > 0:
            self.evaluate()
        logged = self.val_log.read()
        last_eval = int(float(logged[-1]["iteration"])) if logged else None
        bar = tqdm(total=total, initial=self.iteration, unit="it", desc="train", disable=not self.progress,
                   file=sys.stderr)
        last_row: Dict[str, float] = {}
        try:
            while self.iteration < total:
                row = self.train_step(self.iteration)
                self.iteration += 1
                self.train_log.append(row)
                last_row = row
                bar.update(1)
                bar.set_postfix(loss=f"{row['total']:.4f}", pos=int(row["num_pos"]))
                if self.iteration % cfg.log_every == 0:
                    logger.info("iteration %d/%d: loss %.4f (rec %.4f, loc %.4f, %d pos), lr %.2g, %.2f s/it",
                                self.iteration, total, row["total"], row["recognition"], row["localization"],
                                row["num_pos"], row["lr"], row["time_data"] + row["time_step"])
                if cfg.eval.every and self.iteration % cfg.eval.every == 0:
                    self.evaluate()
                    last_eval = self.iteration
                if self.iteration % cfg.checkpoint.every == 0:
                    self.save()
        finally:
            bar.close()
        if cfg.eval.at_end and last_eval != self.iteration and total > 0:
            self.evaluate()
        self.save()
        self.export(self.run_dir / "last", note="last iteration")
        summary = {"iterations": self.iteration, "best_map": None if self.best_map == -math.inf else self.best_map,
                   "best_iteration": self.best_iteration, "last": last_row, "elapsed": self.elapsed,
                   "run_dir": str(self.run_dir)}
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        return summary


def train(config: TrainConfig, run_dir: Union[str, Path], *, resume: bool = False,
          progress: Optional[bool] = None) -> dict:
    """Train (or resume) a run; see :class:`Trainer`."""
    return Trainer(config, run_dir, resume=resume, progress=progress).run()
