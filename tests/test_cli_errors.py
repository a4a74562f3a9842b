"""User errors through the real ``hjepa`` command: a few lines naming the cause and the fix,
exit status 2, no traceback (``--debug`` / ``HJEPA_DEBUG=1`` show it); decord's own C++ log
lines never reach the terminal.

Starting Python with torch and Lightning costs many seconds here, so one subprocess runs the
real entry point (``hjepa.cli.main.main``, what the console script calls) once per case, each
with its own descriptor-2 capture (decord's C++ lines bypass ``sys.stderr``), and one case also
goes through the installed ``hjepa`` console script itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--logger.wandb=false", "--data.resolution=32", "--data.batch_size=2",
        "--data.synthetic.num_train_videos=4", "--data.synthetic.num_val_videos=2",
        "--data.synthetic.frames_per_video=48", "--trainer.limit_val_batches=0"]
ON_FILES = ["--logger.wandb=false", "--data.resolution=32", "--data.batch_size=2"]

# Runs each case of sys.argv[1] (JSON: an argv list, or {"argv": [...], "env": {...}}) through
# hjepa's entry point as the console script does (sys.exit(main())), capturing descriptor 2;
# prints [{"rc", "stderr"}, ...] as JSON.
DRIVER = r"""
import json, os, sys, tempfile, time, traceback
from hjepa.cli.main import main
results = []
for case in json.loads(sys.argv[1]):
    argv, env = (case["argv"], case["env"]) if isinstance(case, dict) else (case, {})
    os.environ.update(env)
    t0 = time.time()
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            try:
                rc = main(argv)
            except SystemExit as exit_:
                rc = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                traceback.print_exc()  # what the interpreter prints for an uncaught exception
                rc = 1
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        for key in env:
            del os.environ[key]
        sink.seek(0)
        results.append({"rc": rc, "stderr": sink.read().decode(errors="replace"), "s": time.time() - t0})
print("RESULTS " + json.dumps(results))
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("HJEPA_RUN_DIR", None)
    env.pop("HJEPA_DEBUG", None)
    env.update(extra)
    return env


def _run_cases(cases: list[list[str]], cwd: Path, **env: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True,
                          timeout=900, env=_env(**env), cwd=cwd)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULTS "):])


def _clean_error(result: dict, *needles: str) -> None:
    err = result["stderr"]
    assert result["rc"] == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "error:" in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err[-3000:]}"


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.mp4").write_bytes(b"")
    (root / "noise.mp4").write_bytes(os.urandom(4000))  # decord's C++ core logs "ERROR opening" for this
    (root / "all_bad.csv").write_text("path\nempty.mp4\nnoise.mp4\nmissing.mp4\n")
    return root


def test_user_errors_end_in_a_few_lines_with_status_2(tmp_path: Path, bad_videos: Path) -> None:
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    evil = tmp_path / "evil" / "checkpoints" / "last.ckpt"
    evil.parent.mkdir(parents=True)
    marker = tmp_path / "unpickling-ran-code"
    # A pickle whose loading calls open(marker, "w"): written with the plain pickle protocol.
    code = (f"import torch\nclass E:\n    def __reduce__(self): return (open, ({str(marker)!r}, 'w'))\n"
            f"torch.save({{'state_dict': {{}}, 'hjepa': {{}}, 'pytorch-lightning_version': '2', 'x': E()}}, "
            f"{str(evil)!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    annotations = tmp_path / "no_columns.csv"
    annotations.write_text("video_id,verb_class,noun_class\nP01_01,1,2\n")  # no frames or times
    cases = [
        ["pretrain", "--run_dir", str(run), *TINY, "--trainer.max_steps=1"],  # writes the checkpoint used below
        ["pretrain", "--run_dir", str(tmp_path / "b"), *ON_FILES, "--data.train_manifests", str(bad_videos / "all_bad.csv")],
        ["pretrain", "--run_dir", str(tmp_path / "c"), *TINY, "--ckpt_path", "last"],
        ["pretrain", "--run_dir", str(run), *TINY, "--trainer.max_steps=2", "--ckpt_path=last", "--model.arch.loss=mse"],
        ["pretrain", "--run_dir", str(tmp_path / "d"), *TINY, "--model.optim.lr=-1"],
        ["pretrain", "--run_dir", str(tmp_path / "e"), *TINY, "--data.batch_size=0"],
        ["pretrain", "--run_dir", str(tmp_path / "f"), *ON_FILES, "--data.train_manifests", str(tmp_path / "nope.csv")],
        ["pretrain", "--run_dir", str(evil.parents[1]), *TINY, "--ckpt_path=last"],
        ["anticipate", "--ckpt", str(ckpt), "--out", str(tmp_path / "ant"), "--data.train", str(annotations),
         "--data.val", str(annotations), "--data.video_dir", str(tmp_path)],
        ["evaluate", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "ev")],
        ["pretrain", "--debug", "--run_dir", str(tmp_path / "g"), *TINY, "--model.optim.lr=-1"],
        {"argv": ["pretrain", "--run_dir", str(tmp_path / "h"), *TINY, "--ckpt_path", "last"],
         "env": {"HJEPA_DEBUG": "1"}},
    ]
    (made, all_bad, no_ckpt, other_model, lr, batch, no_manifest, unsafe, no_columns, no_eval_ckpt, debug,
     debug_env) = results = _run_cases(cases, cwd=bad_videos)
    assert made["rc"] == 0 and ckpt.is_file(), made["stderr"][-3000:]
    print({i: round(r["s"], 1) for i, r in enumerate(results)})

    _clean_error(all_bad, "all 3 training videos", "unusable", "Fix or remove")
    for name in ("empty.mp4", "noise.mp4", "missing.mp4"):  # hjepa's warning: one line per bad file
        assert sum(name in ln for ln in all_bad["stderr"].splitlines() if "skipping video" in ln) == 1, all_bad
    assert "video_reader.cc" not in all_bad["stderr"] and "ERROR opening" not in all_bad["stderr"]
    _clean_error(no_ckpt, "--ckpt_path last", "last.ckpt", "--run_dir")
    assert not (tmp_path / "c").exists(), "a refused resume wrote into the run folder"
    _clean_error(other_model, "another configuration", "loss: checkpoint 'l1' vs current 'mse'", "--config")
    _clean_error(lr, "optim.lr", "-1", "must be positive")
    _clean_error(batch, "batch_size=0", ">= 1")
    _clean_error(no_manifest, "nope.csv")
    _clean_error(unsafe, "refused to load", "could run code")
    assert not marker.exists(), "resume unpickled the tampered checkpoint"
    _clean_error(no_columns, "missing column")
    _clean_error(no_eval_ckpt, "missing.ckpt")
    for result in (all_bad, no_ckpt, other_model, lr, batch, no_manifest, unsafe, no_columns, no_eval_ckpt):
        error_lines = [ln for ln in result["stderr"].splitlines() if ln.startswith("hjepa ")]
        assert len(error_lines) == 1, result["stderr"][-3000:]
    assert debug["rc"] != 2 and "Traceback" in debug["stderr"] and "optim.lr" in debug["stderr"]
    assert debug_env["rc"] != 2 and "Traceback" in debug_env["stderr"] and "MissingCheckpoint" in debug_env["stderr"]


@pytest.mark.slow  # the case above covers the same path; this one pays a second interpreter start
@pytest.mark.skipif(shutil.which("hjepa") is None, reason="the hjepa console script is not installed")
def test_the_console_script_exits_2_without_a_traceback(tmp_path: Path, bad_videos: Path) -> None:
    proc = subprocess.run(["hjepa", "pretrain", "--run_dir", str(tmp_path / "run"), *ON_FILES,
                           "--data.train_manifests", str(bad_videos / "all_bad.csv")],
                          capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "video_reader.cc" not in proc.stderr
    assert "unusable" in proc.stderr and proc.stderr.count("skipping video") == 3
