#!/usr/bin/env python
"""Level 1's ``context_keep`` on the benchmarked training step: cost per clip beside V-JEPA 2's.

For each fraction, ``tools/benchmark_model.py``'s step (ViT-S/16, 16 x 128 x 128, batch 4, fp32
by default) timed interleaved with its reference in the same run; writes a Markdown table and
the JSON of every figure. Ratios are the figures to quote: absolute times move with the load.

    python tools/benchmark_context_keep.py --out docs/speed_context_keep.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hjepa.bench import model_step  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/speed_context_keep.md")
    p.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    p.add_argument("--steps", type=int, default=3, help="timed steps per model (median reported)")
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = [model_step.main(["--steps", str(args.steps), "--windows", "--context_keep", str(k)]) for k in args.keep]
    command = " ".join(["python", "tools/benchmark_context_keep.py", *sys.argv[1:]])
    r0 = rows[0]
    lines = ["# Level 1's context_keep: the training step's cost beside V-JEPA 2's", "",
             f"`{command}`: {r0['setup'].split(',')[0]}, clip {'x'.join(map(str, r0['clip']))}, batch {r0['batch']}, "
             f"{r0['precision']}, {r0['threads']} threads, {r0['device']}; load average {load:.1f} at the start. "
             "Each row is timed interleaved with its own reference step.", "",
             "| `context_keep` | GFLOP / clip | clips/s | peak memory | reference clips/s | clips/s vs V-JEPA 2 | MFU ours / ref |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k, r in zip(args.keep, rows):
        lines.append(f"| {k:g} | {r['ours_gflop_per_clip']:.1f} | {r['ours_clips_per_s']:.2f} | "
                     f"{r['ours_peak_memory_mb']:.0f} MB | {r['reference_clips_per_s']:.2f} | "
                     f"{r['speedup_vs_reference']:.2f}× | {100 * r['ours_mfu']:.0f} % / {100 * r['reference_mfu']:.0f} % |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
