"""Fit a model's score calibration (:mod:`os2d.inference.calibration`) and store it in the model folder.

1. Background bank: scene features of ``--backgrounds`` photos (no objects of interest), every
   ``--every``-th photo at ``--side`` px (longer side).
2. Fitting data: exact-mode detections (raw scores, the best ``--per-image`` per scene) on datasets of
   TRAINING classes only (``--dataset PATH[:SPLIT]``, repeatable), each labelled correct when it
   matches a ground-truth box of its class (IoU >= 0.5, each box once, by decreasing score).
3. ``alpha``, ``beta`` of ``p = sigmoid(alpha * z + beta)`` by logistic regression; written with the
   bank to ``MODEL/calibration.safetensors``. Prints the fit and a reliability table.
4. The default threshold: per dataset, the F1 of the detections above each of ``--thresholds``
   (recall counted over the matches the detector makes at all, i.e. the correct detections of step 2);
   the threshold of the best F1 averaged over the datasets (every domain counts the same, whatever its
   size) is written to ``MODEL/config.json`` as ``score_threshold``.

Usage:
    python benchmarks/calibrate.py --model src/os2d/assets/models/default \\
        --dataset ../shared/data/flickrlogos27:train --dataset /work/runs/data/synth-shelf \\
        --backgrounds ../shared/data/backgrounds
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

ROOT = Path(__file__).resolve().parents[1]


def background_bank(detector, folder: Path, *, every: int, side: int):
    from os2d.inference.calibration import BackgroundBank

    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[::every]
    det = detector.with_settings(scales=[side], pyramid_rule="paper")
    maps = [det.scene(p).features(0)[0].clone() for p in photos]
    return BackgroundBank(maps=maps), [p.name for p in photos]


def training_scenes(spec: str, *, max_images: int):
    """(class images, [(path, labels, boxes)]) of one ``--dataset`` (detection) or ``--recognition`` spec.

    ``recognition:PATH[:CLASSES]`` is a grocery-store / GroZi-120 folder (``CLASSES`` as in
    :func:`os2d.eval.grocery.load_grocery`, e.g. ``train``): each photo is one product, its box the
    whole photo.
    """
    from PIL import Image

    if spec.startswith("recognition:"):
        from os2d.eval.grocery import load_grocery

        path, _, classes = spec[len("recognition:"):].partition(":")
        data = load_grocery(Path(path), split=None, classes=classes or "auto", max_per_class=None)
        photos = data.photos[:: max(1, len(data.photos) // max_images)][:max_images]
        scenes = []
        for photo in photos:
            with Image.open(photo.path) as im:
                width, height = im.size
            scenes.append((photo.path, [photo.label], [[0.0, 0.0, float(width), float(height)]]))
        return dict(data.class_images), scenes
    from os2d.data.datasets import resolve_dataset

    path, _, split = spec.partition(":")
    data = resolve_dataset(path, split=split or None)
    images = data.images[:: max(1, len(data.images) // max_images)][:max_images]
    return dict(data.class_images), [(rec.path, list(rec.labels), rec.boxes) for rec in images]


def labelled_detections(detector, spec: str, *, per_image: int, max_images: int, negatives: int, method: str):
    """(raw scores, entry stats, correct flags) of one training dataset.

    Each scene is searched for its own classes plus ``negatives`` other classes of the dataset (drawn
    with a fixed seed), like a class batch in training.
    """
    import random

    class_images, scenes = training_scenes(spec, max_images=max_images)
    bank = detector.prepare_classes(class_images)
    det = detector.with_settings(method=method, score_threshold=float("-inf"), max_detections=per_image,
                                 scores="raw", one_label=False)
    rng = random.Random(0)
    raws, stats, correct = [], [], []
    for path, labels, boxes in scenes:
        present = sorted(set(labels))
        others = [n for n in bank.names if n not in present]
        names = present + rng.sample(others, min(negatives, len(others)))
        sub = bank.select(names)
        dets = det.detect(path, sub)
        correct.extend(_matched(dets, boxes, [names.index(lab) for lab in labels]))
        raws.append(dets.scores)
        stats.append(sub.extras["calibration"][dets.extra["entries"]])
    spreads = (bank.extras["calibration"][:, 1] - bank.extras["calibration"][:, 0]).numpy()
    return torch.cat(raws), torch.cat(stats), np.array(correct), len(scenes), spreads


def _matched(dets, boxes, labels) -> list:
    """Per detection (by decreasing score): does it match a ground-truth box of its class (IoU >= 0.5, each once)?"""
    gt_boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt_labels = torch.tensor(labels, dtype=torch.int64)
    used = torch.zeros(len(gt_boxes), dtype=torch.bool)
    iou = box_iou(dets.boxes, gt_boxes) if len(gt_boxes) and len(dets) else torch.zeros(len(dets), len(gt_boxes))
    out = []
    for i in range(len(dets)):
        ok = (gt_labels == dets.labels[i]) & ~used & (iou[i] >= 0.5)
        if bool(ok.any()):
            used[int(torch.where(ok, iou[i], torch.tensor(-1.0)).argmax())] = True
        out.append(bool(ok.any()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an os2d model folder (written in place)")
    parser.add_argument("--dataset", action="append", required=True,
                        help="PATH[:SPLIT] of training classes, or recognition:PATH[:CLASSES] (one product per "
                             "photo, e.g. recognition:../shared/data/grozi120:train)")
    parser.add_argument("--backgrounds", type=Path, default=ROOT.parent / "shared" / "data" / "backgrounds")
    parser.add_argument("--every", type=int, default=12)
    parser.add_argument("--side", type=int, default=384)
    parser.add_argument("--per-image", type=int, default=50)
    parser.add_argument("--max-images", type=int, default=120)
    parser.add_argument("--negatives", type=int, default=15, help="other classes searched per scene")
    parser.add_argument("--method", default="fast", choices=["exact", "fast"])
    parser.add_argument("--min-spread", default="median",
                        help="floor of the tail spread q_hi - q_lo in z: a number, or 'median' (the median "
                             "spread of the fitting classes: spreads from a few tail cells are noisy, so no "
                             "class is stretched more than a typical one)")
    parser.add_argument("--offset-weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        help="candidate shares of the class's background tail subtracted from its raw score "
                             "(with one spread for every class); the class-wise standardisation is a candidate too")
    parser.add_argument("--cache", type=Path, help="save (or, when it exists, reuse) the labelled detections here (.npz)")
    parser.add_argument("--thresholds", type=float, nargs="+",
                        default=[0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7],
                        help="candidate default thresholds (calibrated units)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from os2d import Detector
    from os2d.inference.calibration import BackgroundBank

    plain = Detector.load(args.model, scores="raw", pyramid_rule="auto")
    start = time.time()
    bank, names = background_bank(plain, args.backgrounds, every=args.every, side=args.side)
    print(f"background bank: {len(bank.maps)} photos, {bank.cells} cells ({time.time() - start:.0f} s)", flush=True)
    det = Detector(plain.model, plain.config, background=bank, scores="raw", pyramid_rule="auto")
    if args.cache is not None and args.cache.exists():
        cached = np.load(args.cache)
        raw, stat, ok, spreads, sizes = (torch.from_numpy(cached["raw"]), torch.from_numpy(cached["stat"]),
                                         cached["ok"], cached["spreads"], cached["sizes"].tolist())
        print(f"labelled detections from {args.cache}", flush=True)
    else:
        raw, stat, ok, spreads, sizes = _collect(det, args, start)
        if args.cache is not None:
            np.savez(args.cache, raw=raw.numpy(), stat=stat.numpy(), ok=ok, spreads=spreads, sizes=np.array(sizes))
    min_spread = float(np.median(spreads)) if args.min_spread == "median" else float(args.min_spread)
    print(f"tail spreads of {len(spreads)} classes: median {np.median(spreads):.4f}, 10-90 % "
          f"{np.quantile(spreads, 0.1):.4f}-{np.quantile(spreads, 0.9):.4f}; min_spread {min_spread:.4f}")
    cal = _best_standardisation(raw, stat, ok, min_spread=min_spread, weights=args.offset_weights,
                                description=f"fitted on {', '.join(args.dataset)}; backgrounds: {len(names)} "
                                            f"photos of {args.backgrounds.name} at {args.side} px")
    print(f"chosen: offset_weight {cal.offset_weight}, per_class_spread {cal.per_class_spread}; "
          f"alpha {cal.alpha:.4f} beta {cal.beta:.4f}")
    p = cal(raw, stat).numpy()
    print("calibrated   detections  observed precision")
    for lo in np.arange(0.0, 1.0, 0.1):
        sel = (p >= lo) & (p < lo + 0.1)
        if sel.any():
            print(f"[{lo:.1f}, {lo + 0.1:.1f})  {int(sel.sum()):10d}  {ok[sel].mean():.3f}")
    threshold = default_threshold(p, ok, sizes, args.dataset, args.thresholds)
    BackgroundBank(maps=bank.maps, calibrator=cal).save(args.model, model_identity=plain.model_identity)
    _set_threshold(args.model / "config.json", threshold)
    summary = {"score_threshold": threshold, "alpha": cal.alpha, "beta": cal.beta, "min_spread": min_spread,
               "offset_weight": cal.offset_weight, "per_class_spread": cal.per_class_spread, "detections": int(len(ok)), "correct": int(ok.sum()),
               "backgrounds": names, "side": args.side, "datasets": args.dataset}
    (args.model / "calibration.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.model / 'calibration.safetensors'}", file=sys.stderr)


def _best_standardisation(raw, stat, ok, *, min_spread: float, weights, description: str):
    """The calibrator of least log-loss on the fitting data over the candidate standardisations."""
    from os2d.inference.calibration import Calibrator, fit_calibrator

    candidates = [dict(offset_weight=1.0, per_class_spread=True)]
    candidates += [dict(offset_weight=float(w), per_class_spread=False) for w in weights]
    best, best_loss = None, float("inf")
    print("offset_weight  per-class spread  log-loss")
    for cand in candidates:
        z = Calibrator(alpha=1.0, beta=0.0, min_spread=min_spread, **cand).standardise(raw, stat).numpy()
        fitted = fit_calibrator(z, ok)
        cal = Calibrator(alpha=fitted.alpha, beta=fitted.beta, min_spread=min_spread, description=description, **cand)
        p = np.clip(cal(raw, stat).numpy().astype(np.float64), 1e-9, 1 - 1e-9)
        loss = float(-np.mean(ok * np.log(p) + (1 - ok) * np.log(1 - p)))
        print(f"{cand['offset_weight']:13.2f}  {str(cand['per_class_spread']):>16s}  {loss:.5f}")
        if loss < best_loss:
            best, best_loss = cal, loss
    return best


def _collect(det, args, start: float):
    """(raw scores, entry stats, correct flags, tail spreads of the classes) over every ``--dataset``."""
    raws, stats, correct, spreads = [], [], [], []
    for spec in args.dataset:
        r, s, c, n, sp = labelled_detections(det, spec, per_image=args.per_image, max_images=args.max_images,
                                             negatives=args.negatives, method=args.method)
        raws.append(r), stats.append(s), correct.append(c), spreads.append(sp)
        print(f"{spec}: {n} images, {len(c)} detections, {int(c.sum())} correct ({time.time() - start:.0f} s)",
              flush=True)
    return (torch.cat(raws), torch.cat(stats), np.concatenate(correct), np.concatenate(spreads),
            [len(c) for c in correct])


def default_threshold(p: np.ndarray, ok: np.ndarray, sizes, datasets, thresholds) -> float:
    """The candidate threshold of the best F1 averaged over the datasets (``sizes``: detections of each)."""
    bounds = np.cumsum([0] + list(sizes))
    table = np.zeros((len(sizes), len(thresholds)))
    for d in range(len(sizes)):
        pp, yy = p[bounds[d]:bounds[d + 1]], ok[bounds[d]:bounds[d + 1]].astype(bool)
        for j, thr in enumerate(thresholds):
            tp = int((yy & (pp > thr)).sum())
            precision, recall = tp / max(int((pp > thr).sum()), 1), tp / max(int(yy.sum()), 1)
            table[d, j] = 2 * precision * recall / max(precision + recall, 1e-12)
    mean = table.mean(0)
    print("threshold  " + "  ".join(f"{t:5.2f}" for t in thresholds))
    for d, name in enumerate(datasets):
        print(f"F1 {name[-40:]:>40s}  " + "  ".join(f"{v:5.2f}" for v in table[d]))
    print(f"{'mean F1':>43s}  " + "  ".join(f"{v:5.2f}" for v in mean))
    best = float(thresholds[int(np.argmax(mean))])
    print(f"default threshold: {best:g} (best mean F1 {mean.max():.3f})")
    return best


def _set_threshold(config_path: Path, threshold: float) -> None:
    """Rewrite the model's ``config.json`` (atomically, through ``ModelConfig``) with ``score_threshold``."""
    from dataclasses import replace

    from os2d.fileio import atomic_write_text
    from os2d.model.config import ModelConfig

    config = ModelConfig.from_dict(json.loads(config_path.read_text()), source=str(config_path))
    atomic_write_text(config_path, json.dumps(replace(config, score_threshold=threshold).to_dict(), indent=1) + "\n")


if __name__ == "__main__":
    main()
