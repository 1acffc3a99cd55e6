"""Build the synthetic training sets of the default model from ``../shared/data`` only.

Usage::

    python benchmarks/make_training_data.py --out /work/runs/data            # every set
    python benchmarks/make_training_data.py --out /tmp/os2d-data --only synth-fruit-veg

Each set is an OS2D-CSV dataset folder ``OUT/<set>/`` written by :func:`os2d.synth.generate_dataset`
(deterministic given ``--seed``); ``OUT/staging/`` holds renamed byte copies of the snack packshots
(class name = file stem). Nothing of an evaluation class is ever used:

* ``synth-fruit-veg`` -- the 50 fruit/vegetable packshots of ``grocery-store/iconic`` (every class
  named in ``grocery-store/labels.csv``, i.e. the 16 packaged products, is excluded) on
  ``backgrounds/``, random layout, 1000 scenes (the v1 default model's set);
* ``synth-snacks-random`` -- the 83 packshots of ``snacks-packshots/images`` (class
  ``<Brand>-<id>``, class image = the packshot on white, pasted cut out of its white background by
  the ``auto`` mask), random layout, 1000 scenes (seed ``--seed`` + 1: other layouts than fruit/veg).
* ``synth-shelf`` -- shelf layout (``os2d synth --layout shelf``), ``--shelf-scenes`` (1500) scenes
  of 1200 px from a class table (``OUT/staging/shelf_classes.csv``) of 183 classes:
  the 83 snacks (pasted: the RGBA cut-out ``cutouts/<id>.png`` by its alpha; class image: the same
  cut-out, which loads composited on white, i.e. the packshot cropped to the product; group = brand,
  so flavour variants stand side by side), the 50 fruit/vegetables (as above) and the 50 GroZi-120
  TRAIN classes of :func:`os2d.eval.grocery.grozi_class_split` (pasted: the class's in-store crops
  ``photos/<cls>/*.jpg`` as rectangles, one per facing group; class image: ``iconic/<cls>.jpg``;
  class ``grozi-<cls>``). The 50 GroZi-120 CHECK classes are never used.
* ``synth-inhand`` -- a product held up to the camera: ``--inhand-scenes`` (400) photos of 348 px,
  each with one of the 50 fruit/vegetable or 83 snack packshots covering 45-85 % of its side, strong
  colour, shading, blur, noise, occlusion and JPEG jitter (seed ``--seed`` + 12); stage 3 of the
  default model used it without ``similar_classes.json`` (``--no-similar``).

Every set gets (unless ``--no-similar``) ``classes/similar_classes.json`` (:mod:`os2d.train.similar_classes`): for each class
the 5 most similar others -- same brand first, then nearest by a global descriptor (mean-pooled
stride-32 features of the ImageNet EfficientNet-Lite0 on the class image, cosine) -- used as hard
negatives in the class batch.

FlickrLogos-27 ``train`` is used directly by the training config (the trainer drops scenes holding
boxes of ``val-new-cl``).
"""
from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def packaged_grocery_classes(grocery: Path) -> set:
    """The packaged products of the grocery-store check: every ``cls`` of ``labels.csv``."""
    with open(grocery / "labels.csv", newline="") as f:
        packaged = {row["cls"].strip() for row in csv.DictReader(f)}
    if not packaged:
        raise SystemExit(f"no classes in {grocery / 'labels.csv'}")
    return packaged


def allowed_fruit_veg(grocery: Path) -> List[Path]:
    """Iconic images whose class is not one of the packaged products of ``labels.csv``."""
    packaged = packaged_grocery_classes(grocery)
    images = sorted((grocery / "iconic").glob("*.jpg"))
    kept = [p for p in images if p.stem not in packaged]
    print(f"grocery-store: {len(kept)} fruit/vegetable classes; excluded {len(images) - len(kept)} packaged "
          f"products", file=sys.stderr)
    return kept


def brand_slug(brand: str) -> str:
    """A file-name-safe brand: ``"Lay's"`` -> ``Lays``, ``"Good luck"`` -> ``Good-luck``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", brand.replace("'", "")).strip("-")
    return slug or "brand"


@dataclass
class Snack:
    """One snack product of ``snacks-packshots/catalog.csv``."""

    name: str  # class name <Brand>-<id>
    brand: str
    packshot: Path
    cutout: Path


def read_snacks(folder: Path) -> List[Snack]:
    with open(folder / "catalog.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    snacks = [Snack(name=f"{brand_slug(r['brand'])}-{r['id']}", brand=r["brand"], packshot=folder / r["file"],
                    cutout=folder / r["cutout"]) for r in rows]
    if len({s.name for s in snacks}) != len(snacks):
        raise SystemExit(f"duplicate snack ids in {folder / 'catalog.csv'}")
    return sorted(snacks, key=lambda s: s.name)


def stage_copies(files: Dict[str, Path], folder: Path) -> List[Path]:
    """Byte copies ``folder/<name><suffix>`` of ``{name: file}`` (so that class name = file stem)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, src in sorted(files.items()):
        dst = folder / f"{name}{src.suffix}"
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
        out.append(dst)
    return out


# ------------------------------------------------------------------------------------------ sets
def build_fruit_veg(data: Path, out: Path, args) -> object:
    from os2d.synth import SynthConfig, generate_dataset

    config = SynthConfig(num_scenes=args.num_scenes, seed=args.seed, scene_size=args.scene_size,
                         min_objects=2, max_objects=6, object_size=(0.1, 0.45), name="synth-fruit-veg")
    return generate_dataset(allowed_fruit_veg(data / "grocery-store"), [data / "backgrounds"], out, config,
                            overwrite=args.overwrite)


def build_snacks_random(data: Path, out: Path, args) -> object:
    from os2d.synth import SynthConfig, generate_dataset

    snacks = read_snacks(data / "snacks-packshots")
    staged = stage_copies({s.name: s.packshot for s in snacks}, args.out / "staging" / "snacks-packshots")
    config = SynthConfig(num_scenes=args.num_scenes, seed=args.seed + 1, scene_size=args.scene_size,
                         min_objects=2, max_objects=6, object_size=(0.1, 0.45), mask="auto",
                         name="synth-snacks-random")
    return generate_dataset(staged, [data / "backgrounds"], out, config, overwrite=args.overwrite)


def shelf_class_table(data: Path, folder: Path) -> Path:
    """Write the class table of ``synth-shelf`` (absolute paths) and return its path."""
    from os2d.eval.grocery import grozi_class_split

    rows = [{"name": s.name, "class_image": s.cutout, "paste_image": "", "group": brand_slug(s.brand), "mask": "auto"}
            for s in read_snacks(data / "snacks-packshots")]
    rows += [{"name": p.stem, "class_image": p, "paste_image": "", "group": "", "mask": "auto"}
             for p in allowed_fruit_veg(data / "grocery-store")]
    grozi = data / "grozi120"
    with open(grozi / "labels.csv", newline="") as f:
        photos = list(csv.DictReader(f))
    train, check = grozi_class_split(sorted({r["cls"] for r in photos}))
    for cls in train:
        files = sorted(r["file"] for r in photos if r["cls"] == cls)
        rows += [{"name": f"grozi-{cls}", "class_image": grozi / "iconic" / f"{cls}.jpg", "paste_image": grozi / f,
                  "group": "", "mask": "none"} for f in files]
    print(f"grozi120: {len(train)} TRAIN classes ({sum(r['name'].startswith('grozi-') for r in rows)} crops); "
          f"{len(check)} CHECK classes left out", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "shelf_classes.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "class_image", "paste_image", "group", "mask"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: str(v) for k, v in r.items()} for r in rows)
    return table


def build_shelf(data: Path, out: Path, args) -> object:
    from os2d.synth import ShelfConfig, SynthConfig, generate_dataset

    table = shelf_class_table(data, args.out / "staging")
    config = SynthConfig(num_scenes=args.shelf_scenes, seed=args.seed + 2, scene_size=1200, name="synth-shelf",
                         occlusion_prob=0.15,
                         layout="shelf", shelf=ShelfConfig())
    return generate_dataset([], [data / "backgrounds"], out, config, class_table=table, overwrite=args.overwrite)


def build_inhand(data: Path, out: Path, args) -> object:
    """Products held up to the camera: one packshot per small photo, large, with strong photometric jitter."""
    from os2d.synth import SynthConfig, generate_dataset

    snacks = read_snacks(data / "snacks-packshots")
    staged = stage_copies({s.name: s.packshot for s in snacks}, args.out / "staging" / "snacks-packshots")
    config = SynthConfig(num_scenes=args.inhand_scenes, seed=args.seed + 12, scene_size=348, min_objects=1,
                         max_objects=1, object_size=(0.45, 0.85), max_truncation=0.3, rotation_max_deg=20.0,
                         perspective=0.2, brightness=0.4, contrast=0.4, saturation=0.4, color_gain=0.2,
                         shading=0.5, blur_prob=0.5, noise_prob=0.5, occlusion_prob=0.5, jpeg_quality=(40, 85),
                         name="synth-inhand")
    return generate_dataset(allowed_fruit_veg(data / "grocery-store") + staged, [data / "backgrounds"], out,
                            config, overwrite=args.overwrite)


def class_descriptors(paths: List[Path]) -> "object":
    """``[N, 320]`` mean-pooled stride-32 ImageNet EfficientNet-Lite0 features of class images."""
    import numpy as np
    import torch

    from os2d.backbones.efficientnet_lite import build_efficientnet_lite
    from os2d.data.images import load_image
    from os2d.data.preprocess import resize, size_by_area, to_tensor

    net = build_efficientnet_lite("lite0", with_classifier=True)
    out = []
    with torch.no_grad():
        for path in paths:
            pil = load_image(path, what="class image")
            pil = resize(pil, size_by_area(pil.width, pil.height, 240), interpolation="bilinear")
            x = to_tensor(pil, mean=net.pixel_mean, std=net.pixel_std)[None]  # [1, 3, h, w]
            out.append(net.features(x, until_stride=32).mean(dim=(2, 3))[0].numpy())  # [320]
    return np.stack(out)


def write_similar(out: Path, groups: Dict[str, str]) -> None:
    """``classes/similar_classes.json`` of a dataset folder (see the module docstring)."""
    from os2d.data.datasets import resolve_dataset
    from os2d.train.similar_classes import SIMILAR_CLASSES_FILE, rank_similar_classes, write_similar_classes

    dataset = resolve_dataset(str(out))
    names = list(dataset.class_names)
    similar = rank_similar_classes(names, class_descriptors([dataset.class_images[n][0] for n in names]),
                                   groups={n: g for n, g in groups.items() if n in names and g}, top=5)
    write_similar_classes(out / "classes" / SIMILAR_CLASSES_FILE, similar,
                          how="same brand first, then cosine of mean-pooled stride-32 ImageNet EfficientNet-Lite0 "
                              "features of the class images (benchmarks/make_training_data.py)")


def check_no_evaluation_classes(out: Path, data: Path) -> None:
    """Fail if a set holds a class of an evaluation: a packaged grocery product or a GroZi-120 CHECK class."""
    from os2d.data.datasets import resolve_dataset
    from os2d.eval.grocery import grozi_class_split

    with open(data / "grozi120" / "labels.csv", newline="") as f:
        _, check = grozi_class_split(sorted({r["cls"] for r in csv.DictReader(f)}))
    forbidden = packaged_grocery_classes(data / "grocery-store") | {f"grozi-{c}" for c in check}
    leaked = sorted(set(resolve_dataset(str(out)).class_names) & forbidden)
    if leaked:
        raise SystemExit(f"{out}: evaluation classes in the training data: {leaked}")


def snack_groups(data: Path) -> Dict[str, str]:
    return {s.name: brand_slug(s.brand) for s in read_snacks(data / "snacks-packshots")}


BUILDERS: Dict[str, Callable] = {
    "synth-fruit-veg": build_fruit_veg,
    "synth-snacks-random": build_snacks_random,
    "synth-shelf": build_shelf,
    "synth-inhand": build_inhand,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/os2d-data"),
                        help="parent folder of the dataset folders (outside the repository)")
    parser.add_argument("--only", default=",".join(BUILDERS), help=f"comma-separated sets of {list(BUILDERS)}")
    parser.add_argument("--num-scenes", type=int, default=1000, help="scenes per random-layout set")
    parser.add_argument("--shelf-scenes", type=int, default=1500, help="scenes of synth-shelf")
    parser.add_argument("--inhand-scenes", type=int, default=400, help="scenes of synth-inhand")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene-size", type=int, default=800)
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="the shared data folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous output of this script")
    parser.add_argument("--no-similar", action="store_true", help="do not write classes/similar_classes.json")
    parser.add_argument("--similar-only", action="store_true",
                        help="only (re)write classes/similar_classes.json of existing sets")
    args = parser.parse_args()
    if args.out.resolve().is_relative_to(ROOT):
        raise SystemExit(f"--out {args.out} is inside the repository; write generated data elsewhere")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown sets {unknown}; choose from {list(BUILDERS)}")
    for name in names:
        if not args.similar_only:
            summary = BUILDERS[name](args.data, args.out / name, args)
            print(f"{name}: {summary.num_scenes} scenes, {summary.num_boxes} boxes ({summary.num_difficult} "
                  f"difficult), {summary.num_classes} classes -> {summary.out}")
        check_no_evaluation_classes(args.out / name, args.data)
        if not args.no_similar:
            write_similar(args.out / name, snack_groups(args.data))


if __name__ == "__main__":
    main()
