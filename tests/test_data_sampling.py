"""Clip sampling: frame_step vs target_fps, train/eval placement, short-video rules."""

from __future__ import annotations

import pytest
import torch

from hjepa.data.sampling import ClipSampler, ShortVideo


def test_frame_step_and_target_fps_are_exclusive() -> None:
    with pytest.raises(ValueError, match="frame_step=2 and target_fps=8"):
        ClipSampler(8, 4, frame_step=2, target_fps=8)
    with pytest.raises(ValueError, match="short_video='drop'"):
        ClipSampler(short_video="drop")


def test_frame_step() -> None:
    s = ClipSampler(4, 2, frame_step=3)
    assert s.num_frames == 8 and s.span(30.0) == 22
    assert s.offsets(30.0).tolist() == [0, 3, 6, 9, 12, 15, 18, 21]


def test_target_fps_gives_the_same_duration_at_any_source_rate() -> None:
    s = ClipSampler(4, 2, target_fps=10)
    assert s.offsets(30.0).tolist() == [0, 3, 6, 9, 12, 15, 18, 21]
    assert s.offsets(25.0).tolist() == [0, 2, 5, 8, 10, 12, 15, 18]  # round(k * 2.5), halves to even
    for fps in (25.0, 29.97, 30.0, 60.0):
        seconds = (s.offsets(fps)[-1].item()) / fps
        assert seconds == pytest.approx(0.7, abs=0.5 / fps + 1e-9)  # within half a source frame


def test_train_clip_random_start_covers_all_starts() -> None:
    s = ClipSampler(2, 2, frame_step=2)  # span 7
    g = torch.Generator().manual_seed(0)
    starts = {int(s.train_clip(20, 30.0, g)[0]) for _ in range(400)}
    assert starts == set(range(0, 14))
    clip = s.train_clip(20, 30.0, g, start_frame=5, end_frame=13)  # 8 frames allowed, span 7
    assert clip[0] in (5, 6) and clip[-1] <= 12


def test_eval_clips_are_evenly_spaced() -> None:
    s = ClipSampler(4, 1, frame_step=1)
    assert s.eval_clips(100, 30.0, 1)[:, 0].tolist() == [48]  # the middle clip
    clips = s.eval_clips(100, 30.0, 4)
    assert clips.shape == (4, 4)
    assert clips[:, 0].tolist() == [0, 32, 64, 96]  # first to last possible start, equal gaps
    assert clips[-1, -1] == 99


def test_short_video_pad_repeats_the_last_frame() -> None:
    s = ClipSampler(4, 2, frame_step=2)  # span 15
    clip = s.train_clip(6, 30.0, torch.Generator().manual_seed(0))
    assert clip.tolist() == [0, 2, 4, 5, 5, 5, 5, 5]
    assert s.eval_clips(6, 30.0, 3).tolist() == [[0, 2, 4, 5, 5, 5, 5, 5]] * 3


def test_short_video_skip_raises() -> None:
    s = ClipSampler(4, 2, frame_step=2, short_video="skip")
    with pytest.raises(ShortVideo, match="6 frames, a clip needs 15"):
        s.train_clip(6, 30.0)
    with pytest.raises(ShortVideo):
        s.eval_clips(6, 30.0, 2)
    assert s.train_clip(15, 30.0).tolist() == list(range(0, 15, 2))  # exactly long enough
