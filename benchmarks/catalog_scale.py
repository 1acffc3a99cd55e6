"""Catalog scale: exact and fast mode with 10, 100 and 1000 classes on 1280 px scenes.

``build`` writes, from ``../shared/data`` only, into ``--work`` (outside the repository):

* ``classes/``: >= 1000 class images -- the 16 packaged grocery products' packshots (the TRUE
  classes, never used for training), then distractors: crops of the FlickrLogos-27 boxes, the
  GroZi-120 class images and some of its in-store crops, the snack packshots, the fruit/vegetable
  packshots;
* ``catalog/``: an os2d catalog of all of them (``os2d catalog build``), for the model given;
* ``scenes/``: ``--scenes`` synthetic 1280 px scenes (``os2d synth``, random layout on the background
  photos) holding the true classes, with exact boxes.

``run`` measures, for K in ``--ks`` (the 16 true classes + K - 16 distractors; K = 10: ten true
classes) and each mode, in a fresh process: seconds per scene with the model's default pyramid,
the process's peak RSS, and the mAP of the true classes with the other K classes as distractors
(and the joint-class AP), then prints the table.

Usage:
    python benchmarks/catalog_scale.py build --work /work/runs/catalog_scale
    python benchmarks/catalog_scale.py run --work /work/runs/catalog_scale [--ks 10 100 1000] [--modes exact fast]
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _true_classes():
    with open(DATA / "grocery-store" / "labels.csv", newline="") as f:
        return sorted({row["cls"] for row in csv.DictReader(f)})


def build_class_images(out: Path, *, total: int) -> list:
    """Class images as ``out/<name>.png``; returns the names (true classes first)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    names = []

    def add(name: str, image) -> None:
        path = out / f"{name}.png"
        if not path.exists():
            image.convert("RGB").save(path)
        names.append(name)

    for cls in _true_classes():
        add(cls, Image.open(DATA / "grocery-store" / "iconic" / f"{cls}.jpg"))
    with open(DATA / "flickrlogos27" / "classes" / "flickrlogos27.csv", newline="") as f:
        for row in csv.DictReader(f):
            img = Image.open(DATA / "flickrlogos27" / "src" / row["imagefilename"])
            w, h = img.size
            box = (float(row["lx"]) * w, float(row["ty"]) * h, float(row["rx"]) * w, float(row["by"]) * h)
            if min(box[2] - box[0], box[3] - box[1]) >= 20:
                add(f"logo-{row['classname']}-{row['gtbboxid']}", img.crop(tuple(int(v) for v in box)))
    for p in sorted((DATA / "grozi120" / "iconic").glob("*.jpg")):
        add(f"grozi-{p.stem}", Image.open(p))
    for p in sorted((DATA / "snacks-packshots" / "images").glob("*.jpg")):
        add(f"snack-{p.stem}", Image.open(p))
    true = set(_true_classes())
    for p in sorted((DATA / "grocery-store" / "iconic").glob("*.jpg")):
        if p.stem not in true:
            add(f"produce-{p.stem}", Image.open(p))
    for folder in sorted((DATA / "grozi120" / "photos").iterdir()):
        for p in sorted(folder.glob("*.jpg"))[:4]:
            if len(names) >= total:
                break
            img = Image.open(p)
            if min(img.size) >= 24:
                add(f"grozi-photo-{p.stem}", img)
    return names


def build(args) -> None:
    from os2d import Detector
    from os2d.catalog import Catalog
    from os2d.synth import SynthConfig, generate_dataset

    work = args.work
    names = build_class_images(work / "classes", total=args.total)
    print(f"{len(names)} class images ({len(_true_classes())} true)", flush=True)
    if not (work / "scenes").exists():
        true = [work / "classes" / f"{c}.png" for c in _true_classes()]
        config = SynthConfig(num_scenes=args.scenes, seed=7, scene_size=1280, min_objects=4, max_objects=10,
                             object_size=(0.08, 0.3))
        generate_dataset(true, [DATA / "backgrounds"], work / "scenes", config)
    if not (work / "catalog").exists():
        det = Detector.load(args.model)
        cat = Catalog.create(work / "catalog", det)
        start = time.time()
        for i in range(0, len(names), 64):
            cat.add({n: [work / "classes" / f"{n}.png"] for n in names[i:i + 64]}, detector=det)
            print(f"catalog: {len(cat)} classes ({time.time() - start:.0f} s)", flush=True)


def measure(work: Path, k: int, mode: str, model: str, threads: int, scenes: int,
            max_windows: Optional[int] = None) -> dict:
    """One configuration in this (fresh) process (``max_windows``: fast mode's window budget, None: the default)."""
    import torch

    from os2d import Detector
    from os2d.catalog import Catalog
    from os2d.data.datasets import resolve_dataset
    from os2d.eval.evaluate import evaluate_detections

    torch.set_num_threads(threads)
    cascade = {} if max_windows is None else {"max_windows": max_windows}
    det = Detector.load(model, method=mode, score_threshold=float("-inf"), max_detections=300, scores="raw",
                        one_label=False, cascade=cascade)
    data = resolve_dataset(str(work / "scenes"))
    catalog = Catalog.open(work / "catalog", det)
    true = [c for c in _true_classes()][:min(k, 16)]
    others = [n for n in catalog.names if n not in set(_true_classes())][:max(0, k - len(true))]
    bank = catalog.bank(true + others)
    data = data.subset(classes=true)
    data = data.subset(file_names=[r.file_name for r in data.images[:scenes]])
    records, seconds = [], []
    for rec in data.images:
        start = time.perf_counter()
        dets = det.detect(rec.path, bank, image_name=rec.file_name)
        seconds.append(time.perf_counter() - start)
        records.extend(dets.to_records())
    result = evaluate_detections(data, records, distractors=others)
    return {"k": k, "mode": mode, "scenes": len(data.images), "seconds_per_scene": sum(seconds) / len(seconds),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "map": result["map"],
            "ap_joint_classes": result["ap_joint_classes"], "true_classes": len(true), "distractors": len(others)}


def run(args) -> None:
    rows = []
    print(f"{'K':>5s} {'mode':>6s} | {'s/scene':>8s} {'RSS MB':>7s} | {'mAP %':>6s} {'joint AP %':>10s}")
    for k in args.ks:
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "child", "--work", str(args.work), "--k", str(k),
                                  "--mode", mode, "--model", args.model, "--threads", str(args.threads),
                                  "--scenes", str(args.scenes)]
                                 + ([] if args.max_windows is None else ["--max-windows", str(args.max_windows)]),
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{k:5d} {mode:>6s} | {row['seconds_per_scene']:8.2f} {row['peak_rss_mb']:7.0f} | "
                  f"{100 * row['map']:6.1f} {100 * row['ap_joint_classes']:10.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "run", "child"):
        p = sub.add_parser(name)
        p.add_argument("--work", type=Path, required=True)
        p.add_argument("--model", default="default")
        p.add_argument("--threads", type=int, default=1)
    sub.choices["build"].add_argument("--total", type=int, default=1100)
    sub.choices["build"].add_argument("--scenes", type=int, default=12)
    sub.choices["run"].add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000])
    sub.choices["run"].add_argument("--modes", nargs="+", default=["exact", "fast"])
    sub.choices["run"].add_argument("--json", type=Path)
    for name in ("run", "child"):
        sub.choices[name].add_argument("--scenes", type=int, default=12, help="use the first N scenes")
        sub.choices[name].add_argument("--max-windows", type=int, default=None,
                                       help="fast mode's window budget (default: the model's, 1500)")
    sub.choices["child"].add_argument("--k", type=int, required=True)
    sub.choices["child"].add_argument("--mode", required=True)
    args = parser.parse_args()
    if args.command == "build":
        build(args)
    elif args.command == "run":
        run(args)
    else:
        print(json.dumps(measure(args.work, args.k, args.mode, args.model, args.threads, args.scenes,
                                 max_windows=args.max_windows)))


if __name__ == "__main__":
    main()
