"""CPU time of ``os2d detect`` on one 1280 px scene with 10 classes (median of 3 runs).

Usage: python benchmarks/detect_speed.py [--models default ../shared/fixtures/reference/v2/checkpoint_v2.pth]
Prints wall and CPU seconds per model, for the default 7-level pyramid around 1280 px and for a single
1280 px level. Needs ../shared/data (scene and class images).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def inputs(tmp: Path):
    data = SHARED / "data" / "flickrlogos27"
    if not data.exists():
        sys.exit(f"shared data not found: {data}")
    scene = Image.open(SHARED / "data" / "backgrounds" / "urban100_img_065.jpg").convert("RGB")
    scale = 1280 / max(scene.size)
    scene = scene.resize((round(scene.width * scale), round(scene.height * scale)), Image.BILINEAR)
    path = tmp / "scene_1280.jpg"
    scene.save(path, quality=95)
    classes = {p.stem: p for p in sorted((data / "classes" / "images").glob("*.jpg"))[:10]}
    return path, classes


def measure(model: str, scene: Path, classes, scales, repeats: int):
    from os2d import Detector

    det = Detector.load(model, scales=scales)
    bank = det.prepare_classes(classes)
    det.detect(scene, bank)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        # class features are part of the job on a fresh scene: include them
        det.detect(scene, det.prepare_classes(classes))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+",
                        default=["default", str(SHARED / "fixtures" / "reference" / "v2" / "checkpoint_v2.pth")])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path("/tmp/os2d-bench")
    tmp.mkdir(exist_ok=True)
    scene, classes = inputs(tmp)
    print(f"scene {scene.name} {Image.open(scene).size}, {len(classes)} classes, {args.threads} threads")
    print(f"{'model':60s} {'pyramid':>16s} {'wall s':>8s} {'cpu s':>8s}")
    for model in args.models:
        for label, scales in (("7 levels x1280", None), ("single 1280", [1280])):
            wall, cpu = measure(model, scene, classes, scales, args.repeats)
            print(f"{Path(model).name:60s} {label:>16s} {wall:8.2f} {cpu:8.2f}", flush=True)


if __name__ == "__main__":
    main()
