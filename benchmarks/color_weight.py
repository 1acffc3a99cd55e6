"""Choose the colour weight of one-label contests on scenes of TRAINING classes with flavour variants.

For each weight, detects (fast mode, calibrated scores, one label per object) on ``--max-images``
scenes of a dataset whose classes include same-brand variants (the synthetic shelf set of
``benchmarks/make_training_data.py``: each scene searched for its own classes plus ``--negatives``
others), and counts, over the detections that overlap a ground-truth box (IoU >= 0.5), how often the
label is the box's class. Prints one line per weight.

Usage: python benchmarks/color_weight.py --model src/os2d/assets/models/default --dataset /work/runs/data/synth-shelf
"""
from __future__ import annotations

import argparse
import random

import torch
from torchvision.ops import box_iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True, help="PATH[:SPLIT] of training classes")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4, 0.8])
    parser.add_argument("--max-images", type=int, default=40)
    parser.add_argument("--negatives", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from os2d import Detector
    from os2d.data.datasets import resolve_dataset

    path, _, split = args.dataset.partition(":")
    data = resolve_dataset(path, split=split or None)
    images = data.images[:: max(1, len(data.images) // args.max_images)][:args.max_images]
    det = Detector.load(args.model, method="fast", one_label=True, score_threshold=0.3)
    bank = det.prepare_classes(dict(data.class_images))
    rng = random.Random(0)
    plans = []
    for rec in images:
        present = sorted(set(rec.labels))
        others = [n for n in bank.names if n not in present]
        plans.append((rec, present + rng.sample(others, min(args.negatives, len(others)))))
    for weight in args.weights:
        d = det.with_settings(color_weight=weight)
        right = total = 0
        for rec, names in plans:
            dets = d.detect(rec.path, bank.select(names))
            gt = torch.as_tensor(rec.boxes, dtype=torch.float32).reshape(-1, 4)
            if not len(dets) or not len(gt):
                continue
            iou = box_iou(dets.boxes, gt)
            best, which = iou.max(1)
            for i in (best >= 0.5).nonzero().squeeze(1).tolist():
                total += 1
                right += int(dets.names[i] == rec.labels[int(which[i])])
        print(f"color_weight {weight:.2f}: {right}/{total} = {right / max(total, 1):.3f} of the boxes on objects "
              f"carry the object's class", flush=True)


if __name__ == "__main__":
    main()
