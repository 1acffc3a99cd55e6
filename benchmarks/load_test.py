"""Load test of ``os2d serve`` (loopback only, bounded in clients and time).

N concurrent clients for D seconds against one server, mixing ``POST /detect`` with class adds
(new names and extensions) and deletes. Prints requests/s, p50/p95 latency per operation and the
count of answers by status, then checks the catalog: every class the server lists is one that
should be there (adds answered 201 and not deleted since), with the acknowledged image count,
and in the catalog folder every class file loads whole and SQLite agrees with catalog.json.

    OMP_NUM_THREADS=1 python benchmarks/load_test.py                # starts its own server
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --catalog DIR   # a running one

Exit code 1 when a 5xx, a transport error or a catalog discrepancy was seen.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import io
import ipaddress
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GROCERY = ROOT.parent / "shared" / "data" / "grocery-store"
BASE_CLASSES = ("Alpro-Fresh-Soy-Milk", "Arla-Sour-Milk", "Tropicana-Apple-Juice", "Oatly-Natural-Oatghurt",
                "God-Morgon-Orange-Juice")


def generated(seed: int, size=(96, 72)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def inputs():
    """(base class images {name: bytes}, scene photos [bytes]): grocery-store data when present."""
    if (GROCERY / "iconic").is_dir():
        classes = {n: (GROCERY / "iconic" / f"{n}.jpg").read_bytes() for n in BASE_CLASSES}
        scenes = [p.read_bytes() for n in BASE_CLASSES for p in sorted((GROCERY / "photos" / "test" / n).glob("*.jpg"))[:2]]
        return classes, scenes
    return {f"base{i}": generated(i) for i in range(5)}, [generated(100 + i, (400, 300)) for i in range(4)]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        sys.exit(f"load_test: refusing {url}: only loopback addresses (127.0.0.0/8, ::1, localhost)")


class Ledger:
    """What the clients were told: per class the acknowledged image count, and what was deleted."""

    def __init__(self) -> None:
        self.images: Dict[str, int] = {}
        self.latency: Dict[str, List[float]] = collections.defaultdict(list)
        self.status: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.transport_errors = 0

    def record(self, op: str, status: int, seconds: float) -> None:
        self.latency[op].append(seconds)
        self.status[op][status] += 1


async def client_loop(cid: int, http: httpx.AsyncClient, ledger: Ledger, scenes: List[bytes], deadline: float,
                      rng: random.Random) -> None:
    mine: List[str] = []
    counter = 0
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.1 or (roll < 0.2 and not mine):
                counter += 1
                name = mine[-1] if (mine and rng.random() < 0.3) else f"load-{cid}-{counter}"
                start = time.perf_counter()
                r = await http.post("/classes", data={"name": name},
                                    files=[("images", ("c.png", generated(cid * 10_000 + counter), "image/png"))])
                ledger.record("add", r.status_code, time.perf_counter() - start)
                if r.status_code == 201:
                    ledger.images[name] = r.json()["images"]
                    if name not in mine:
                        mine.append(name)
            elif roll < 0.2:
                name = mine.pop(rng.randrange(len(mine)))
                start = time.perf_counter()
                r = await http.delete(f"/classes/{name}")
                ledger.record("delete", r.status_code, time.perf_counter() - start)
                if r.status_code == 204:
                    ledger.images.pop(name, None)
            else:
                scene = rng.choice(scenes)
                start = time.perf_counter()
                r = await http.post("/detect", files={"image": ("s.jpg", scene, "image/jpeg")})
                ledger.record("detect", r.status_code, time.perf_counter() - start)
        except httpx.HTTPError as err:
            ledger.transport_errors += 1
            print(f"client {cid}: {type(err).__name__}: {err}", file=sys.stderr)


async def run_load(url: str, clients: int, duration: float, ledger: Ledger, scenes: List[bytes]) -> float:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        start = time.monotonic()
        deadline = start + duration
        await asyncio.gather(*[client_loop(c, http, ledger, scenes, deadline, random.Random(c)) for c in range(clients)])
        return time.monotonic() - start


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def report(ledger: Ledger, wall: float) -> int:
    total = sum(len(v) for v in ledger.latency.values())
    print(f"\n{total} requests in {wall:.1f} s: {total / wall:.2f} requests/s")
    print(f"{'op':8} {'n':>6} {'p50 ms':>9} {'p95 ms':>9}  statuses")
    for op in ("detect", "add", "delete"):
        lat = ledger.latency.get(op, [])
        print(f"{op:8} {len(lat):6d} {percentile(lat, 50) * 1000:9.0f} {percentile(lat, 95) * 1000:9.0f}  "
              f"{dict(sorted(ledger.status[op].items()))}")
    server_errors = sum(n for c in ledger.status.values() for s, n in c.items() if s >= 500)
    print(f"5xx answers: {server_errors}; transport errors: {ledger.transport_errors}")
    return server_errors + ledger.transport_errors


def verify(url: str, folder: Optional[Path], ledger: Ledger, base: Dict[str, bytes]) -> int:
    """Discrepancies between what clients were told, what the server lists and the folder."""
    problems: List[str] = []
    listed = {c["name"]: c["images"] for c in httpx.get(f"{url}/classes", timeout=60).json()}
    expected = {**{n: 1 for n in base}, **ledger.images}
    for name, images in expected.items():
        if listed.get(name) != images:
            problems.append(f"class {name!r}: expected {images} images, the server lists {listed.get(name)}")
    problems += [f"class {n!r} listed but deleted or never acknowledged" for n in set(listed) - set(expected)]
    if folder is not None:
        problems += verify_folder(folder)
    print(f"catalog check: {len(listed)} classes listed, {len(expected)} expected, {len(problems)} problems")
    for line in problems[:20]:
        print("  " + line)
    return len(problems)


def verify_folder(folder: Path) -> List[str]:
    from os2d.catalog import store
    from os2d.serve import db

    problems = []
    index = store.read_index(folder)
    for entry in index.classes:
        try:
            state = store.read_class_file(folder, entry.features)
            if state["features"].shape[0] != entry.entries:
                problems.append(f"{entry.name!r}: features file has {state['features'].shape[0]} entries, "
                                f"index says {entry.entries}")
        except (OSError, ValueError) as err:
            problems.append(f"{entry.name!r}: features file unreadable ({err})")
        problems += [f"{entry.name!r}: image {rel} missing" for rel in entry.images if not (folder / rel).is_file()]
    with db.opened(folder) as conn:
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            problems.append("SQLite integrity_check failed")
        rows = {r.name: (r.id, r.entries, r.images) for r in db.read_classes(conn)}
        if db.read_version(conn) != index.version:
            problems.append(f"SQLite version {db.read_version(conn)} != catalog.json version {index.version}")
    mirrored = {c.name: (c.id, c.entries, len(c.images)) for c in index.classes}
    if rows != mirrored:
        problems.append(f"SQLite and catalog.json disagree on {sorted(set(rows.items()) ^ set(mirrored.items()))[:5]}")
    return problems


def seed_catalog(url: str, base: Dict[str, bytes]) -> None:
    for name, data in base.items():
        r = httpx.post(f"{url}/classes", data={"name": name}, files=[("images", (f"{name}.jpg", data, "image/jpeg"))],
                       timeout=300)
        if r.status_code != 201:
            sys.exit(f"load_test: could not add base class {name}: {r.status_code} {r.text}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--catalog", type=Path, help="its catalog folder, checked afterwards")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at most 600)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--scales", default="320", help="pyramid of the server this script starts")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 200 and 0 < args.duration <= 600):
        sys.exit("load_test: --clients must be 1..200 and --duration 0..600 s")
    base, scenes = inputs()
    with tempfile.TemporaryDirectory(prefix="os2d-load-") as tmp:
        server = None
        if args.url is None:
            sys.path.insert(0, str(ROOT / "tests" / "serve"))
            from serve_helpers import ServerProcess

            args.catalog = Path(tmp) / "catalog"
            server = ServerProcess(["--catalog", str(args.catalog), "--model", args.model, "--scales", args.scales,
                                    "--workers", str(args.workers), "--log-level", "warning"]).__enter__()
            args.url = server.url
        check_loopback(args.url)
        try:
            seed_catalog(args.url, base)
            ledger = Ledger()
            print(f"{args.clients} clients for {args.duration:g} s against {args.url} ...", flush=True)
            wall = asyncio.run(run_load(args.url, args.clients, args.duration, ledger, scenes))
            failures = report(ledger, wall) + verify(args.url, args.catalog, ledger, base)
        finally:
            if server is not None:
                print(f"server exit code after SIGTERM: {server.stop()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
