"""Accuracy and speed of OS2D and every baseline on the shared data -> docs/results.md (+ .json).

Runs, for each method (``os2d`` with the given model, ``sliding-window-square`` and
``sliding-window-ar`` with the same model's features, ``sift``):

* **flickrlogos27, split val-new-cl** (174 photos, 6 brands never used for training): VOC mAP at
  IoU 0.5 (reference OS2D protocol), every detection kept (threshold -inf, 300 per image);
* **grocery-store recognition check** (split test, 424 photos, 16 packshots as class images):
  top-1 accuracy (see ``os2d.eval.grocery``).

Pyramid for flickrlogos27 (the same for all OS2D-family methods; SIFT has none): the paper's 7
levels 0.5 .. 1.6 x base, with the base chosen as in the paper so that objects are about as large
as the class images (240 px) at level 1. The mean object size of val-new-cl, ``sqrt(box area)``
over the image's longer side, is 0.283 (0.281 on train), so base = 240 / 0.283 ~= 850 px:
levels 425, 531, 680, 850, 1020, 1190, 1360 px for ~500 px photos
(``os2d.eval.methods.suggest_base_size`` computes the estimate; 850 on val-new-cl, 860 on train).
Grocery-store photos use ``os2d.eval.grocery.DEFAULT_SCALES`` (256, 320, 384, 448 px).

Usage::

    python benchmarks/results_report.py --overwrite                 # everything (long on a CPU)
    python benchmarks/results_report.py --max-images 8 --output /tmp/r.md --overwrite   # quick
    python benchmarks/results_report.py --methods sift --tasks grocery --update   # add/replace runs
    python benchmarks/results_report.py --report-only --merge /tmp/other/results.json  # combine runs

``--update`` keeps the runs already in the JSON next to ``--output`` and replaces those run again;
the markdown is always rebuilt from all runs. The JSON is rewritten after every run, so an
interrupted report keeps what was finished. Seconds per image are wall-clock (and CPU) seconds of
the detection loop (class features excluded; they are computed once per dataset), measured on
whatever machine runs the script: on a shared CPU they vary from run to run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
METHODS = ("os2d", "sliding-window-square", "sliding-window-ar", "sift")
TASKS = ("flickrlogos27", "grocery")
FLICKR_SPLIT = "val-new-cl"
#: Pyramid base size for flickrlogos27 (see the module docstring).
FLICKR_BASE_SIZE = 850
GROCERY_SPLIT = "test"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_one(task: str, method: str, *, model: str, data_root: Path, max_images: Optional[int],
            loaded: Dict[str, object], device: str, progress: bool) -> dict:
    """One (task, method) evaluation -> result entry."""
    from os2d.eval.methods import EVAL_SETTINGS, build_method

    settings = dict(EVAL_SETTINGS)
    if task == "flickrlogos27":
        from os2d.data.datasets import resolve_dataset

        data = resolve_dataset("flickrlogos27", data_root=data_root, split=FLICKR_SPLIT)
        if max_images is not None and max_images < len(data):
            data = data.subset(file_names=[r.file_name for r in data.images[:max_images]])
        items = [(r.file_name, r.path) for r in data.images]
        if method != "sift":
            settings["base_size"] = FLICKR_BASE_SIZE
    else:
        from os2d.eval.grocery import DEFAULT_SCALES, load_grocery

        data = load_grocery(data_root / "grocery-store", split=GROCERY_SPLIT)
        if max_images is not None:
            data = data.head(max_images)
        items = [(p.name, p.path) for p in data.photos]
        if method != "sift":
            settings["scales"] = list(DEFAULT_SCALES)

    if method == "sift":
        runner = build_method("sift", **settings)
    else:
        if model not in loaded:
            from os2d.detector import Detector

            loaded[model] = Detector.load(model, device=device)
        runner = build_method(method, model=model, detector=loaded[model], **settings)

    start = time.perf_counter()
    bank = runner.prepare_classes(data.class_images)
    class_seconds = time.perf_counter() - start
    records: List[dict] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    from tqdm import tqdm

    for name, path in tqdm(items, desc=f"{method} on {data.name}", unit="img",
                           disable=not (progress and sys.stderr.isatty())):
        records.extend(runner.detect(path, bank, image_name=name).to_records(image_name=name))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    described = runner.describe()
    entry = {
        "task": task, "dataset": data.name, "method": method, "model": described["model"],
        "num_images": len(items), "max_images": max_images,
        "seconds_per_image": wall / max(1, len(items)), "cpu_seconds_per_image": cpu / max(1, len(items)),
        "seconds_class_features": class_seconds, "settings": described["settings"],
        "scales": described["settings"].get("level_scales"), "num_detections": len(records),
    }
    if "model_description" in described:
        entry["model_description"] = described["model_description"]
    if task == "flickrlogos27":
        from os2d.eval.evaluate import evaluate_detections

        result = evaluate_detections(data, records)
        entry.update({"metric": "mAP", "value": result["map"], "ap_per_class": result["ap_per_class"],
                      "recall": result["recall"], "map_weighted": result["map_weighted"]})
    else:
        from os2d.eval.grocery import evaluate_grocery_records

        result = evaluate_grocery_records(data, records)
        entry.update({"metric": "top-1 accuracy", "value": result["accuracy"],
                      "accuracy_per_class": result["accuracy_per_class"],
                      "mean_class_accuracy": result["mean_class_accuracy"],
                      "num_without_detections": result["num_without_detections"]})
    return entry


def _key(entry: dict) -> tuple:
    return entry["task"], entry["method"], entry["model"]


def _fmt_scales(scales) -> str:
    return "-" if not scales else ", ".join(f"{s:g}" for s in scales)


def markdown(runs: List[dict], meta: dict) -> str:
    """The results page."""
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/results_report.py` "
        f"({meta['date']}, os2d {meta['os2d_version']}, torch {meta['torch']}, {meta['machine']}, "
        f"torch threads: {meta['threads']}). Numbers of the model `default` as it was at that time"
        + (f": {meta['default_model']}" if meta.get("default_model") else "") + ".",
        "",
        "| task | method | model | metric | value (%) | images | s / image | CPU s / image | pyramid (longer side, px) |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    order = {t: i for i, t in enumerate(TASKS)}
    morder = {m: i for i, m in enumerate(METHODS)}
    for e in sorted(runs, key=lambda e: (order.get(e["task"], 9), morder.get(e["method"], 9), str(e["model"]))):
        value = "-" if e["value"] is None else f"{100 * e['value']:.1f}"
        partial = "" if e.get("max_images") is None else f" (first {e['num_images']})"
        lines.append(
            f"| {e['dataset']} | {e['method']} | {e['model'] or '-'} | {e['metric']} | {value} | "
            f"{e['num_images']}{partial} | {e['seconds_per_image']:.2f} | {e['cpu_seconds_per_image']:.2f} | "
            f"{_fmt_scales(e.get('scales'))} |"
        )
    lines += [
        "",
        "* **flickrlogos27:val-new-cl**: VOC mAP at IoU 0.5 (reference OS2D protocol) over the 6 brands "
        "never used for training (Fedex, Google, Mini, Puma, Texaco, Vodafone), one class image per brand; "
        "every detection kept (score threshold -inf, at most 300 per image).",
        f"* Pyramid for flickrlogos27: the paper's 7 levels (0.5 .. 1.6) x base {FLICKR_BASE_SIZE} px. As in the "
        "paper, the base makes objects about 240 px (the class-image size) at level 1: the mean object size, "
        "sqrt(box area) / image longer side, is 0.283 on val-new-cl (0.281 on train), and 240 / 0.283 ~= 850 "
        "(`os2d.eval.methods.suggest_base_size`). The same pyramid is used for all OS2D-family methods; SIFT "
        "is scale-invariant and runs on the original photos.",
        "* **grocery-store:test**: one-shot recognition; the 16 packshots of the packaged products are the "
        "class images, and a photo is correct when its top-scoring detection is of its class "
        "(`os2d.eval.grocery`). Pyramid 256, 320, 384, 448 px for the 348 px photos (a product covering "
        "75 % of the photo is 240 px at 320).",
    ]
    same = sorted({e["dataset"] for e in runs if e["method"] == "os2d"
                   for f in runs if f["method"] == "sliding-window-square" and f["task"] == e["task"]
                   and f["model"] == e["model"] and f.get("max_images") == e.get("max_images")
                   and f["value"] == e["value"]})
    if same:
        lines.append(f"* os2d and sliding-window-square give identical numbers on {', '.join(same)}: the model's "
                     "TransformNet outputs the identity transform (as an untrained, identity-initialised one does), "
                     "which is exactly the square sliding-window baseline.")
    lines += [
        "* Seconds per image: wall-clock of the detection loop on the machine above (class features, computed "
        "once per dataset, excluded); CPU seconds count all threads. Shared CPUs make these noisy.",
        "",
        "Reproduce one row with the CLI, e.g.:",
        "",
        "```",
        f"os2d evaluate --dataset flickrlogos27 --data-root ../shared/data --split {FLICKR_SPLIT} "
        f"--method os2d --base-size {FLICKR_BASE_SIZE} --json out.json",
        "os2d evaluate --dataset grocery-store --data-root ../shared/data --method sift",
        "```",
        "",
    ]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED / "data")
    parser.add_argument("--model", default="default", help="model of the OS2D-family methods")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images of each task")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "results.md",
                        help="markdown file; the JSON goes beside it (.json)")
    parser.add_argument("--update", action="store_true", help="keep other runs already in the JSON")
    parser.add_argument("--merge", type=Path, nargs="+", default=[],
                        help="also take the runs of these results JSON files (written by other invocations)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild the markdown from the JSON beside --output (and --merge)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error("--max-images must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    out_md, out_json = args.output, args.output.with_suffix(".json")
    if args.report_only:
        args.update, args.tasks = True, []
    if not args.update and not args.overwrite:
        existing = [p for p in (out_md, out_json) if p.exists()]
        if existing:
            parser.error(f"output exists: {', '.join(map(str, existing))} (use --overwrite or --update)")
    if not out_md.parent.is_dir():
        parser.error(f"output folder does not exist: {out_md.parent}")
    if not args.data_root.is_dir():
        parser.error(f"data folder not found: {args.data_root}")

    import os2d

    runs: List[dict] = []
    stored_meta = None
    if args.update and out_json.exists():
        stored = json.loads(out_json.read_text(encoding="utf-8"))
        runs, stored_meta = stored.get("runs", []), stored.get("meta")
    for other in args.merge:
        for entry in json.loads(other.read_text(encoding="utf-8")).get("runs", []):
            runs = [r for r in runs if _key(r) != _key(entry)] + [entry]
    default_desc = None
    if args.model == "default":
        from os2d.zoo import load_model

        default_desc = load_model("default")[1].description or None
    meta = {"date": datetime.date.today().isoformat(), "os2d_version": os2d.__version__,
            "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "threads": torch.get_num_threads(), "default_model": default_desc}
    if args.report_only and stored_meta:
        meta = stored_meta
    if args.merge or args.report_only:
        _write(out_json, json.dumps({"meta": meta, "runs": runs}, indent=2, allow_nan=False) + "\n")
    loaded: Dict[str, object] = {}
    for task in args.tasks:
        for method in args.methods:
            entry = run_one(task, method, model=args.model, data_root=args.data_root, max_images=args.max_images,
                            loaded=loaded, device=args.device, progress=True)
            _log(f"{entry['dataset']:<28} {method:<22} {entry['metric']} {100 * (entry['value'] or 0):5.1f} %  "
                 f"{entry['seconds_per_image']:.2f} s/img ({entry['num_images']} images)")
            runs = [r for r in runs if _key(r) != _key(entry)] + [entry]
            _write(out_json, json.dumps({"meta": meta, "runs": runs}, indent=2, allow_nan=False) + "\n")
    _write(out_md, markdown(runs, meta))
    _log(f"wrote {out_md} and {out_json}")


if __name__ == "__main__":
    main()
