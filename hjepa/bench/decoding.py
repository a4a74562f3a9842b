"""Data-pipeline throughput: decoders on real clips, and the DataModule's loader.

    python tools/benchmark_data.py [--videos ../shared/data/videos] [--json out.json] [--quick]

Measures, on every clip of ``--videos``:

* ``sampled``: frames/s of decoding one clip of the default config (8 x 4 = 32 consecutive frames
  at a random start, the file opened each time as a dataset does), decord and PyAV readers;
* ``full``: frames/s of decoding every frame through the readers;
* ``floor``: frames/s of PyAV's plain ``for frame in container.decode(video=0)`` loop, decode only
  and decode + ``to_ndarray("rgb24")`` (what an RGB reader cannot beat with the same threads).

All decoders use one thread (``--threads``), as each DataLoader worker does. Then the
DataModule's training loader in clips/s (64 px, batch 8, default clip) with 0, 1 and 2 workers,
on the synthetic dataset and on a manifest of the same clips (worker start-up excluded: the
first batch is not timed). Prints a table; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av
import torch

from hjepa.data.manifests import VIDEO_EXTENSIONS, VideoRow, write_csv_manifest
from hjepa.data.readers import DecordReader, PyAVReader, decord_available
from hjepa.data.sampling import ClipSampler
from hjepa.data.synthetic import SyntheticConfig
from hjepa.train.datamodule import VideoDataModule

# The shared real clips sit beside the repository: <repo>/../shared/data/videos.
DEFAULT_VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"


def _floor(path: Path, threads: int, rgb: bool) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.best("video")
        s.codec_context.thread_count = threads
        s.codec_context.thread_type = "AUTO" if threads != 1 else "SLICE"
        for frame in c.decode(s):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n, time.perf_counter() - t0


def _reader_full(cls: type, path: Path, threads: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = cls(path, threads=threads)
    n = r.num_frames
    # In chunks, so that an HD clip does not need all its frames in memory at once.
    for i in range(0, n, 64):
        r.get_batch(list(range(i, min(n, i + 64))))
    r.close()
    return n, time.perf_counter() - t0


def _reader_sampled(cls: type, path: Path, threads: int, starts: list[list[int]]) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for idx in starts:
        r = cls(path, threads=threads)
        r.get_batch(idx)
        r.close()
        n += len(idx)
    return n, time.perf_counter() - t0


def bench_decoders(videos: Path, threads: int, repeats: int, quick: bool) -> list[dict]:
    files = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if quick:
        files = files[:6]
    sampler = ClipSampler(8, 4)
    g = torch.Generator().manual_seed(0)
    rows = []
    readers = [("decord", DecordReader)] if decord_available() else []
    readers.append(("pyav", PyAVReader))
    for path in files:
        header = PyAVReader(path)
        n, fps = header.num_frames, header.fps
        h, w = header.frame_size()
        header.close()
        starts = [sampler.train_clip(n, fps, g).tolist() for _ in range(repeats)]
        row = {"file": path.name, "frames": n, "size": f"{w}x{h}"}
        for name, cls in readers:
            k, t = _reader_sampled(cls, path, threads, starts)
            row[f"{name}_sampled_fps"] = k / t
            k, t = _reader_full(cls, path, threads)
            row[f"{name}_full_fps"] = k / t
        k, t = _floor(path, threads, rgb=False)
        row["floor_decode_fps"] = k / t
        k, t = _floor(path, threads, rgb=True)
        row["floor_rgb_fps"] = k / t
        rows.append(row)
        print(f"  {path.name:52s} " + " ".join(f"{v:8.0f}" for k2, v in row.items() if k2.endswith("_fps")), flush=True)
    return rows


def bench_loader(dm_kwargs: dict, workers: int, batches: int, epochs: int = 1) -> dict:
    dm = VideoDataModule(**dm_kwargs, num_workers=workers, persistent_workers=workers > 0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    clips, skipped, t0 = 0, 0, None
    for _ in range(epochs):
        for i, batch in enumerate(loader):
            if t0 is None:  # the first batch pays the worker start-up: not timed
                t0 = time.perf_counter()
                continue
            clips += batch["clip"].shape[0]
            skipped += int(batch["skipped"])
            if i >= batches:
                break
    dt = time.perf_counter() - (t0 or time.perf_counter())
    return {"workers": workers, "clips": clips, "seconds": dt, "clips_per_s": clips / dt if dt > 0 else 0.0,
            "skipped": skipped}


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    return statistics.fmean(vals) if vals else float("nan")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of real clips")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--threads", type=int, default=1, help="decoder threads")
    p.add_argument("--repeats", type=int, default=3, help="sampled clips per file")
    p.add_argument("--batches", type=int, default=12, help="timed loader batches per setting")
    p.add_argument("--quick", action="store_true", help="6 clips, fewer batches")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = min(args.batches, 4)

    result: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "av": av.__version__, "load_avg_start": os.getloadavg()[0]},
        "threads": args.threads,
    }
    if args.videos.is_dir():
        print(f"decoding, frames/s ({args.threads} thread): "
              "[decord sampled, decord full,] pyav sampled, pyav full, floor decode, floor decode+rgb")
        rows = bench_decoders(args.videos, args.threads, args.repeats, args.quick)
        result["decoders"] = rows
        keys = [k for k in rows[0] if k.endswith("_fps")]
        result["decoders_mean_fps"] = {k: _mean(rows, k) for k in keys}
        frames = sum(r["frames"] for r in rows)
        # All frames of all clips / total time (weights the HD clips by their cost).
        result["decoders_pooled_fps"] = {
            k: frames / sum(r["frames"] / r[k] for r in rows) for k in keys if "full" in k or "floor" in k
        }
    else:
        print(f"{args.videos} not found: decoder benchmark skipped")

    base = {"batch_size": 8, "resolution": 64}
    loaders = {"synthetic": dict(base, synthetic=SyntheticConfig())}
    tmp = None
    if args.videos.is_dir():
        tmp = tempfile.TemporaryDirectory()
        files = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        write_csv_manifest(Path(tmp.name) / "m.csv", [VideoRow(str(f)) for f in files])
        loaders["real_clips"] = dict(base, train_manifests=str(Path(tmp.name) / "m.csv"), drop_last=False)
        # The same files streamed from shards (hjepa shard): what the shard path costs or saves.
        from hjepa.data.shards import write_shards

        write_shards(Path(tmp.name) / "m.csv", str(Path(tmp.name) / "shards"), chunk_bytes="8MB")
        loaders["shards"] = dict(base, shards=str(Path(tmp.name) / "shards"), drop_last=False)
    result["loader"] = {}
    for name, kw in loaders.items():
        result["loader"][name] = []
        for workers in (0, 1, 2):
            epochs = 1 if name == "synthetic" else 1 + args.batches * 8 // len(files)
            r = bench_loader(kw, workers, args.batches, epochs)
            result["loader"][name].append(r)
            print(f"loader {name:10s} workers={workers}: {r['clips_per_s']:7.1f} clips/s "
                  f"({r['clips']} clips in {r['seconds']:.2f} s)", flush=True)
    if tmp is not None:
        tmp.cleanup()
    result["machine"]["load_avg_end"] = os.getloadavg()[0]

    print("\nsummary (mean over clips of frames/s):")
    for k, v in result.get("decoders_mean_fps", {}).items():
        print(f"  {k:22s} {v:9.0f}")
    print("pooled (all frames / all time):")
    for k, v in result.get("decoders_pooled_fps", {}).items():
        print(f"  {k:22s} {v:9.0f}")
    print("loader clips/s (T=32, 64 px, batch 8):")
    for name, rs in result["loader"].items():
        print(f"  {name:10s} " + "  ".join(f"{r['workers']} workers: {r['clips_per_s']:6.1f}" for r in rs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return result
