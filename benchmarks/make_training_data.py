"""Build the synthetic training set of ``configs/default_cpu.yaml``: grocery fruit & vegetables only.

Usage: python benchmarks/make_training_data.py [--out /tmp/os2d-synth] [--num-scenes 1000] [--seed 0]

Class images are the GroceryStoreDataset iconic packshots (``../shared/data/grocery-store/iconic``)
EXCEPT the 16 packaged products (every class named in the ``cls`` column of ``labels.csv``: Alpro,
Arla, Bravo, Garant, God-Morgon, Oatly, Tropicana, Yoggi); those stay unseen for evaluation. They
are pasted onto ``../shared/data/backgrounds`` with ``os2d synth`` (``os2d.synth.generate_dataset``),
and the result is an OS2D-CSV dataset (``OUT/classes/synth-fruit-veg.csv``, split ``train``).
The same thing from the shell (list the allowed class images explicitly)::

    os2d synth --classes <each allowed iconic/*.jpg> --backgrounds ../shared/data/backgrounds \\
        --out /tmp/os2d-synth --num-scenes 1000 --seed 0 --name synth-fruit-veg
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def allowed_class_images(grocery: Path) -> List[Path]:
    """Iconic images whose class is not one of the packaged products of ``labels.csv``."""
    with open(grocery / "labels.csv", newline="") as f:
        packaged = {row["cls"].strip() for row in csv.DictReader(f)}
    if not packaged:
        raise SystemExit(f"no classes in {grocery / 'labels.csv'}")
    images = sorted((grocery / "iconic").glob("*.jpg"))
    kept = [p for p in images if p.stem not in packaged]
    excluded = [p.stem for p in images if p.stem in packaged]
    missing = sorted(packaged - set(excluded))
    if missing:  # a packaged class without an iconic image would be harmless, but say so
        print(f"note: packaged classes without an iconic image: {missing}", file=sys.stderr)
    print(f"{len(kept)} fruit/vegetable classes; excluded {len(excluded)} packaged products", file=sys.stderr)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/os2d-synth"), help="output dataset folder (new or empty)")
    parser.add_argument("--num-scenes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene-size", type=int, default=800)
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="the shared data folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous output of this script")
    args = parser.parse_args()
    if args.out.resolve().is_relative_to(ROOT):
        raise SystemExit(f"--out {args.out} is inside the repository; write generated data elsewhere")

    from os2d.synth import SynthConfig, generate_dataset

    classes = allowed_class_images(args.data / "grocery-store")
    config = SynthConfig(num_scenes=args.num_scenes, seed=args.seed, scene_size=args.scene_size,
                         min_objects=2, max_objects=6, object_size=(0.1, 0.45), name="synth-fruit-veg")
    summary = generate_dataset(classes, [args.data / "backgrounds"], args.out, config, overwrite=args.overwrite)
    print(f"wrote {summary.num_scenes} scenes, {summary.num_boxes} boxes, {summary.num_classes} classes "
          f"to {summary.out}")


if __name__ == "__main__":
    main()
