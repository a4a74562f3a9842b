"""``hjepa shard --manifest M --out DIR``: a manifest's videos as streaming shards.

``hjepa pretrain --data.shards DIR`` (or an ``s3://`` / ``gs://`` URL the folder was copied to)
then trains from them: each rank and loader worker streams its own chunks, and a resumed run
continues at the sample where it stopped. See ``hjepa.data.shards``.
"""

from __future__ import annotations

from hjepa.cli.function_cli import run_function_cli


def shard(manifest: str, out: str, chunk_bytes: str = "64MB", workers: int = 1) -> dict:
    """Write the videos of a manifest (encoded bytes and labels) into shards.

    Args:
        manifest: a manifest ``hjepa pretrain --data.train_manifests`` reads (CSV, list or folder).
        out: a new folder (or an object-store URL) for the chunks and their ``index.json``.
        chunk_bytes: target size of one chunk (litdata's ``chunk_bytes``, e.g. ``64MB``).
        workers: processes writing chunks.
    """
    from hjepa.data.shards import write_shards

    report = write_shards(manifest, out, chunk_bytes, workers)
    print(f"wrote {report.videos} videos ({report.bytes / 2**20:.1f} MB) into shards in {report.out}")
    if report.missing:
        print(f"left out {len(report.missing)} row(s) whose file does not exist, e.g. {report.missing[0]}")
    return {"videos": report.videos, "missing": report.missing, "out": report.out, "bytes": report.bytes}


def main(argv: list[str]) -> None:
    run_function_cli(shard, argv, "hjepa shard", "Write a manifest's videos into streaming shards.")
