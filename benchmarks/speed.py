"""Exact mode against the reference implementation's CPU timings (``timing.json``).

For every configuration of ``../shared/fixtures/reference/timing.json`` (ResNet-50 V2 checkpoint,
the demo scene at 1280 px or native 685 px, 1 / 4 / 16 class images of the listed sizes), a fresh
process loads the same checkpoint, computes the class features and detects on one pyramid level
(score threshold -inf, per-class NMS 0.3), ``--repeats`` times after a warm-up, and reports the
median seconds of the whole job (class features + scene features + head + NMS) and of its parts,
and the process's peak RSS (``getrusage``), next to the reference's figures (its fastest head
variant: batched or per-class loop) and the ratios.

Usage: python benchmarks/speed.py [--threads 2 1] [--repeats 5] [--configs 1280_16cls ...] [--json OUT]
Needs ../shared/fixtures/reference. Run it on an otherwise idle machine: timings on a busy one
mean little (see docs/speed.md).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "fixtures" / "reference"
DEMO = ROOT / "src" / "os2d" / "assets" / "example"


def class_images(sizes_hw, scene):
    """The demo class images, then crops of the demo scene, resized to exactly the listed (h, w)."""
    import numpy as np
    from PIL import Image

    out = []
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes_hw):
        if i < 2:
            img = Image.open(DEMO / f"class_image_{i}.jpg").convert("RGB")
        else:
            side = int(rng.integers(60, 251))
            cw, ch = (side, max(1, round(side * h / w))) if w >= h else (max(1, round(side * w / h)), side)
            x, y = int(rng.integers(0, scene.width - cw)), int(rng.integers(0, scene.height - ch))
            img = scene.crop((x, y, x + cw, y + ch))
        out.append(img.resize((w, h), Image.BILINEAR))
    return out


def measure(config: str, threads: int, repeats: int) -> dict:
    """Run one configuration in this (fresh) process."""
    import torch
    from PIL import Image

    from os2d import Detector

    torch.set_num_threads(threads)
    run = json.loads((REFERENCE / "timing.json").read_text())["runs"][config]
    h, w = run["input_hw"]
    scene = Image.open(DEMO / "input_image.jpg").convert("RGB")
    scene_in = scene.resize((w, h), Image.BILINEAR) if (w, h) != scene.size else scene
    classes = {f"c{i}": img for i, img in enumerate(class_images(run["class_image_hw"], scene))}
    det = Detector.load(REFERENCE / "v2" / "checkpoint_v2.pth", scales=[max(w, h)], score_threshold=float("-inf"),
                        max_detections=100000, nms_iou=0.3)
    parts = {"class_features": [], "total": [], "scene_features": []}
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        bank = det.prepare_classes(classes)
        t1 = time.perf_counter()
        scene_obj = det.scene(scene_in)
        scene_obj.features(0)
        t2 = time.perf_counter()
        cands = det.method.candidates(det, scene_obj, bank)
        t3 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        parts["class_features"].append(t1 - t0)
        parts["scene_features"].append(t2 - t1)
        parts["total"].append(t3 - t0)
    med = {k: statistics.median(v) for k, v in parts.items()}
    med["head_and_nms"] = med["total"] - med["class_features"] - med["scene_features"]
    med["num_detections"] = len(cands)
    med["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return med


def reference_figures(config: str) -> dict:
    run = json.loads((REFERENCE / "timing.json").read_text())["runs"][config]
    head = min(run["head_batched_s"]["median"], run["head_per_class_loop_s"]["median"])
    parts = {"scene_features": run["feature_extraction_s"]["median"],
             "class_features": run["class_features_and_head_creation_s"]["median"],
             "head_and_nms": head + run["decode_nms_s"]["median"]}
    parts["total"] = sum(parts.values())
    parts["peak_rss_mb"] = run["peak_rss_mb_getrusage"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "THREADS", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    if not REFERENCE.exists():
        sys.exit(f"reference fixtures not found: {REFERENCE}")
    configs = args.configs or list(json.loads((REFERENCE / "timing.json").read_text())["runs"])
    rows = []
    print(f"{'config':12s} {'thr':>3s} | {'total s':>8s} {'ref s':>7s} {'speedup':>7s} | {'scene':>6s} {'classes':>7s} "
          f"{'head+nms':>8s} | {'RSS MB':>7s} {'ref MB':>7s} {'ratio':>5s}")
    for config in configs:
        ref = reference_figures(config)
        for threads in args.threads:
            out = subprocess.run([sys.executable, __file__, "--child", config, str(threads), str(args.repeats)],
                                 capture_output=True, text=True, check=True)
            mine = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"config": config, "threads": threads, "os2d": mine, "reference": ref})
            print(f"{config:12s} {threads:3d} | {mine['total']:8.2f} {ref['total']:7.2f} {ref['total'] / mine['total']:6.2f}x | "
                  f"{mine['scene_features']:6.2f} {mine['class_features']:7.2f} {mine['head_and_nms']:8.2f} | "
                  f"{mine['peak_rss_mb']:7.0f} {ref['peak_rss_mb']:7.0f} {mine['peak_rss_mb'] / ref['peak_rss_mb']:5.2f}",
                  flush=True)
    print("reference: timing.json medians, torch 2 threads, head = the faster of batched and per-class loop; "
          "total = scene features + class features + head + decode/NMS")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
