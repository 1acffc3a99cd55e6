"""Accuracy, precision/recall at the default threshold and speed on the shared data -> docs/results.md.

Tasks (classes never used for training):

* ``flickrlogos27`` -- split val-new-cl (174 photos, 6 brands): VOC mAP at IoU 0.5 (reference protocol);
* ``grocery`` -- the grocery-store check (split test, 424 photos, the 16 packaged products): top-1;
* ``grozi`` -- the GroZi-120 check (the CHECK classes of ``os2d.eval.grocery.grozi_class_split``): top-1.

Runs: the trained ``default`` model in exact and fast mode, the previous default (``--previous``),
``untrained`` (the identity TransformNet on the ImageNet backbone, which *is* the square sliding
window), the aspect-ratio sliding window on the same ImageNet features, and SIFT. Every OS2D-family run
uses the model's own settings but the same pyramid rule (``auto``: levels from each photo's size), keeps
every detection for the mAP / top-1 (threshold -inf, 300 per image), and also reports precision and
recall at the method's **default threshold**:

* detection sets: detections scoring above it, matched greedily to ground truth (IoU >= 0.5, same
  class, each box once; difficult boxes ignored); precision = matched / kept, recall = matched / boxes;
* recognition sets: a photo is answered when its best detection scores above the threshold;
  precision = right answers / answered photos, recall = right answers / photos.

Usage::

    python benchmarks/results_report.py --previous /work/runs/models/default_v1 --overwrite
    python benchmarks/results_report.py --runs default-fast --tasks grocery --update
    python benchmarks/results_report.py --report-only

The JSON beside the markdown is rewritten after every run (an interrupted report keeps what is done).
Hand-written notes after the generated part (from the first ``## `` heading on) are kept.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TASKS = ("flickrlogos27", "grocery", "grozi")
#: run name -> (method, model key)
RUNS = {"default-exact": ("exact", "default"), "default-fast": ("fast", "default"),
        "previous": ("exact", "previous"), "untrained": ("exact", "untrained"),
        "sliding-window-ar": ("sliding-window-ar", "untrained"), "sift": ("sift", None)}


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_task(task: str, data_root: Path, max_images: Optional[int]):
    """(data, class images, [(name, path)], kind)."""
    if task == "flickrlogos27":
        from os2d.data.datasets import resolve_dataset

        data = resolve_dataset("flickrlogos27", data_root=data_root, split="val-new-cl")
        if max_images is not None and max_images < len(data):
            data = data.subset(file_names=[r.file_name for r in data.images[:max_images]])
        return data, dict(data.class_images), [(r.file_name, r.path) for r in data.images], "detection"
    from os2d.eval.grocery import load_grocery

    data = load_grocery(data_root / ("grocery-store" if task == "grocery" else "grozi120"), split="test")
    if max_images is not None:
        data = data.head(max_images)
    return data, dict(data.class_images), [(p.name, p.path) for p in data.photos], "recognition"


def detection_pr(data, records, threshold: float) -> Dict[str, float]:
    """Precision and recall of the detections above ``threshold`` (see the module docstring)."""
    from torchvision.ops import box_iou

    kept = [r for r in records if r["score"] > threshold]
    by_image: Dict[str, list] = {}
    for r in sorted(kept, key=lambda r: -r["score"]):
        by_image.setdefault(r["image"], []).append(r)
    matched = boxes = 0
    for rec in data.images:
        gt = torch.as_tensor(rec.boxes, dtype=torch.float32).reshape(-1, 4)
        hard = np.asarray(rec.difficult, dtype=bool)
        boxes += int((~hard).sum())
        used = np.zeros(len(gt), dtype=bool)
        for det in by_image.get(rec.file_name, []):
            ious = box_iou(torch.tensor([det["bbox"]]), gt)[0].numpy() if len(gt) else np.zeros(0)
            same = np.array([lab == det["class"] for lab in rec.labels], dtype=bool)
            ok = same & ~used & (ious >= 0.5)
            if ok.any():
                j = int(np.argmax(np.where(ok, ious, -1)))
                used[j] = True
                matched += int(not hard[j])
    return {"precision": matched / len(kept) if kept else None, "recall": matched / boxes if boxes else None,
            "kept": len(kept)}


def recognition_pr(data, records, threshold: float) -> Dict[str, float]:
    best: Dict[str, tuple] = {}
    for r in records:
        if r["score"] > threshold and (r["image"] not in best or r["score"] > best[r["image"]][0]):
            best[r["image"]] = (r["score"], r["class"])
    right = sum(1 for p in data.photos if p.name in best and best[p.name][1] == p.label)
    return {"precision": right / len(best) if best else None, "recall": right / len(data.photos),
            "kept": len(best)}


def run_one(task: str, run: str, *, models: Dict[str, str], data_root: Path, max_images: Optional[int]) -> dict:
    from os2d.eval.methods import build_method

    method, model_key = RUNS[run]
    data, class_images, items, kind = load_task(task, data_root, max_images)
    settings = {"score_threshold": float("-inf"), "max_detections": 300}
    if method != "sift":
        settings["pyramid_rule"] = "auto"  # the same pyramid rule for every OS2D-family run
    runner = build_method(method, model=models.get(model_key, "default"), **settings)
    default_threshold = _default_threshold(method, models.get(model_key))
    start = time.perf_counter()
    bank = runner.prepare_classes(class_images)
    class_seconds = time.perf_counter() - start
    records: List[dict] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for name, path in items:
        records.extend(runner.detect(path, bank, image_name=name).to_records(image_name=name))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    described = runner.describe()
    entry = {"task": task, "run": run, "method": method, "model": models.get(model_key), "dataset": data.name,
             "num_images": len(items), "max_images": max_images, "seconds_per_image": wall / len(items),
             "cpu_seconds_per_image": cpu / len(items), "seconds_class_features": class_seconds,
             "settings": described["settings"], "model_description": described.get("model_description"),
             "threshold": default_threshold}
    if kind == "detection":
        from os2d.eval.evaluate import evaluate_detections

        result = evaluate_detections(data, records)
        entry.update(metric="mAP", value=result["map"], ap_per_class=result["ap_per_class"])
        entry.update(detection_pr(data, records, default_threshold))
    else:
        from os2d.eval.grocery import evaluate_grocery_records

        result = evaluate_grocery_records(data, records)
        entry.update(metric="top-1", value=result["accuracy"], accuracy_per_class=result["accuracy_per_class"])
        entry.update(recognition_pr(data, records, default_threshold))
    return entry


def _default_threshold(method: str, model: Optional[str]) -> float:
    if method == "sift":
        return float("-inf")
    from os2d.detector import Detector

    return Detector.load(model or "default").settings.score_threshold


def _clean(value):
    """JSON-ready: non-finite floats as strings ("-inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _threshold(entry: dict) -> float:
    return float(entry["threshold"])


def _pct(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def markdown(runs: List[dict], meta: dict) -> str:
    lines = ["# Results", "",
             f"Generated by `python benchmarks/results_report.py` ({meta['date']}, os2d {meta['os2d_version']}, "
             f"torch {meta['torch']}, {meta['machine']}, torch threads: {meta['threads']}). `default` is "
             f"{meta.get('default_model') or 'the packaged model'}; `previous` is {meta.get('previous_model') or '-'}.",
             "", "| task | run | metric | value (%) | threshold | precision (%) | recall (%) | images | s / image |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    order = {t: i for i, t in enumerate(TASKS)}
    rorder = {r: i for i, r in enumerate(RUNS)}
    for e in sorted(runs, key=lambda e: (order.get(e["task"], 9), rorder.get(e["run"], 9))):
        thr = "-inf" if not math.isfinite(_threshold(e)) else f"{_threshold(e):g}"
        part = "" if e.get("max_images") is None else f" (first {e['num_images']})"
        lines.append(f"| {e['dataset']} | {e['run']} | {e['metric']} | {_pct(e['value'])} | {thr} | "
                     f"{_pct(e.get('precision'))} | {_pct(e.get('recall'))} | {e['num_images']}{part} | "
                     f"{e['seconds_per_image']:.2f} |")
    lines += ["", (__doc__ or "").split("Usage::")[0].strip().replace("\n\n", "\n"), ""]
    return "\n".join(lines)


def kept_notes(old: str) -> str:
    """The hand-written part of an earlier report: from its first ``## `` heading on ("" if none)."""
    at = old.find("\n## ")
    return "" if at < 0 else old[at + 1:]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=SHARED / "data")
    parser.add_argument("--model", default="default")
    parser.add_argument("--previous", default=None, help="the previous default model (a folder)")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--update", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_md, out_json = args.output, args.output.with_suffix(".json")
    if not (args.update or args.overwrite or args.report_only) and (out_md.exists() or out_json.exists()):
        parser.error(f"output exists: {out_md} (use --overwrite or --update)")
    import os2d
    from os2d.zoo import load_model

    earlier = json.loads(out_json.read_text()) if (args.update or args.report_only) and out_json.exists() else {}
    runs = earlier.get("runs", [])
    meta = {"date": datetime.date.today().isoformat(), "os2d_version": os2d.__version__, "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": torch.get_num_threads(),
            "default_model": load_model(args.model)[1].description,
            "previous_model": load_model(args.previous)[1].description if args.previous
            else earlier.get("meta", {}).get("previous_model")}
    models = {"default": args.model, "previous": args.previous, "untrained": "untrained"}
    todo = [] if args.report_only else [(t, r) for t in args.tasks for r in args.runs
                                        if r != "previous" or args.previous]
    for task, run in todo:
        entry = run_one(task, run, models=models, data_root=args.data_root, max_images=args.max_images)
        _log(f"{entry['dataset']:<26} {run:<18} {entry['metric']} {_pct(entry['value'])} % "
             f"P {_pct(entry.get('precision'))} R {_pct(entry.get('recall'))} {entry['seconds_per_image']:.2f} s/img")
        runs = [r for r in runs if (r["task"], r["run"]) != (task, run)] + [entry]
        out_json.write_text(json.dumps(_clean({"meta": meta, "runs": runs}), indent=1, allow_nan=False) + "\n")
    notes = kept_notes(out_md.read_text()) if out_md.exists() else ""
    out_md.write_text(markdown(runs, meta) + ("\n" + notes if notes else ""))
    _log(f"wrote {out_md}")


if __name__ == "__main__":
    main()
