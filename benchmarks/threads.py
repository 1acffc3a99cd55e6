"""How torch's thread count affects detection on this machine, with and without another busy job.

For 1 and 2 (or ``--threads``) torch threads, detects the shipped example (default model, one 685 px
level, fixed work) ``--repeats`` times in a fresh process, once on an otherwise idle machine and once
while ``--busy`` processes spin on the CPU (a stand-in for another job), and prints the median seconds
and what :func:`os2d.inference.threads.auto_threads` picks in each case.

Usage: python benchmarks/threads.py [--threads 1 2] [--busy 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1000003


def child(threads: int, repeats: int) -> dict:
    import torch

    from os2d import Detector
    from os2d.cli.detect import example_files
    from os2d.inference.threads import auto_threads

    chosen = auto_threads()
    torch.set_num_threads(threads)
    scenes, classes = example_files()
    det = Detector.load("default", scales=[685], score_threshold=float("-inf"))
    bank = det.prepare_classes(classes)
    det.detect(scenes[0], bank)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        det.detect(scenes[0], bank)
        times.append(time.perf_counter() - start)
    return {"threads": threads, "median_s": statistics.median(times), "auto": chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--busy", type=int, default=1, help="spinning processes in the busy case")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    print(f"{'machine':>8s} {'threads':>7s} {'median s':>9s} {'auto picks':>10s}")
    for busy in (0, args.busy):
        stop = multiprocessing.Event()
        hogs = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for hog in hogs:
            hog.start()
        try:
            for threads in args.threads:
                out = subprocess.run([sys.executable, __file__, "--child", str(threads), str(args.repeats)],
                                     capture_output=True, text=True, check=True,
                                     env={k: v for k, v in __import__("os").environ.items() if k != "OMP_NUM_THREADS"})
                row = json.loads(out.stdout.strip().splitlines()[-1])
                label = "idle" if busy == 0 else f"+{busy} busy"
                print(f"{label:>8s} {threads:7d} {row['median_s']:9.2f} {row['auto']:10d}", flush=True)
        finally:
            stop.set()
            for hog in hogs:
                hog.join(timeout=5)


if __name__ == "__main__":
    main()
