"""decord's C++ log lines are kept off stderr; everything else written there still shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hjepa.data.native_log import without_decord_log
from hjepa.data.readers import VideoReadError, open_video


def test_an_unreadable_file_gives_hjepas_error_and_no_decord_log_line(tmp_path: Path, capfd) -> None:
    pytest.importorskip("decord")
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(os.urandom(4000))
    with pytest.raises(VideoReadError, match="cannot open as video"):
        open_video(bad, "decord")
    err = capfd.readouterr().err
    assert "video_reader.cc" not in err and "ERROR opening" not in err, err


def test_other_output_on_descriptor_2_is_passed_through(capfd) -> None:
    with without_decord_log():
        os.write(2, b"[12:00:00] /src/video/video_reader.cc:83: ERROR opening: x.mp4\n")
        os.write(2, b"a line from someone else\n")
    err = capfd.readouterr().err
    assert "video_reader.cc" not in err
    assert "a line from someone else" in err
