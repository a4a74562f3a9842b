"""Window arithmetic against hand-computed cases (fps 30, 50, 59.94; clamping; dropped actions)."""

import random

import pytest

from hjepa.anticipation.annotations import Segment, VideoTiming
from hjepa.anticipation.windows import (
    anticipation_steps,
    draw_tau_a,
    last_observed_frame,
    observation_window,
    plan_windows,
)

NTSC = 60000 / 1001  # 59.94


def test_fps30_every_other_frame():
    # t_end = 10 - 1 = 9 s -> frame 270; 15 frames/s at 30 fps is a stride of 2.
    w = observation_window(start_s=10.0, fps=30.0, tau_a=1.0, num_frames=8, sample_fps=15.0)
    assert w.frames == (256, 258, 260, 262, 264, 266, 268, 270)
    assert w.end_frame == 270 and w.first_frame == 256 and not w.clamped


def test_fps50_stride5():
    # t_end = 2 s -> frame 100; 10 frames/s at 50 fps is a stride of 5.
    w = observation_window(start_s=3.0, fps=50.0, tau_a=1.0, num_frames=4, sample_fps=10.0)
    assert w.frames == (85, 90, 95, 100)


def test_fps5994_fixed_rate():
    # t_end = 4 s. 4 * 60000/1001 = 239.76 -> 239; 3.9333 s -> 235.764 -> 235;
    # 3.8667 s -> 231.768 -> 231; 3.8 s -> 227.772 -> 227.
    w = observation_window(start_s=5.0, fps=NTSC, tau_a=1.0, num_frames=4, sample_fps=15.0)
    assert w.frames == (227, 231, 235, 239)
    # the last observed frame is at least tau_a before the action: 239 / 59.94 = 3.987 s <= 4 s
    assert w.end_frame / NTSC <= 4.0 < (w.end_frame + 1) / NTSC


def test_fps5994_frame_step_is_integer_stride():
    # sample_fps = fps / 2 must give exactly end - 2j.
    w = observation_window(start_s=5.0, fps=NTSC, tau_a=1.0, num_frames=4, sample_fps=NTSC / 2)
    assert w.frames == (233, 235, 237, 239)


def test_fps5994_tau_a_not_a_whole_frame():
    # 1 s at 59.94 fps is 59.94 frames: the gap must round up to 60 frames, never down to 59.
    assert last_observed_frame(start_s=600 / NTSC, tau_a=1.0, fps=NTSC) == 540
    assert last_observed_frame(start_s=20.0, tau_a=1.0, fps=50.0) == 950


def test_float_noise_on_frame_boundary():
    # 0.3 * 30 = 8.999999999999998 in floats; the frame is 9.
    assert last_observed_frame(0.3, 0.0, 30.0) == 9
    assert observation_window(0.3, 30.0, 0.0, 1, 30.0).frames == (9,)


def test_clamped_at_video_start():
    # t_end = 0.5 s -> frame 15; stride 3: 15 - 3j -> -6, -3 clamp to 0.
    w = observation_window(start_s=1.5, fps=30.0, tau_a=1.0, num_frames=8, sample_fps=10.0)
    assert w.frames == (0, 0, 0, 3, 6, 9, 12, 15)
    assert w.clamped and w.first_frame == -6 and w.end_frame == 15


def test_nothing_observable_is_dropped():
    assert observation_window(start_s=0.8, fps=30.0, tau_a=1.0, num_frames=8, sample_fps=10.0) is None
    # exactly at the boundary one frame (frame 0) is observable
    w = observation_window(start_s=1.0, fps=50.0, tau_a=1.0, num_frames=4, sample_fps=10.0)
    assert w.frames == (0, 0, 0, 0) and w.clamped


def test_clamped_at_video_end():
    # a 100-frame video: t_end = 4 s -> frame 120 lies past the end -> 99.
    w = observation_window(start_s=5.0, fps=30.0, tau_a=1.0, num_frames=3, sample_fps=30.0, video_frames=100)
    assert w.frames == (99, 99, 99) and w.clamped and w.end_frame == 120


def test_bad_arguments():
    with pytest.raises(ValueError, match="fps"):
        observation_window(1.0, 0.0, 0.5, 4, 10.0)
    with pytest.raises(ValueError, match="num_frames"):
        observation_window(1.0, 30.0, 0.5, 0, 10.0)


def test_plan_counts_clamped_and_dropped():
    info = {"a": VideoTiming("a", 30.0, 60.0), "b": VideoTiming("b", 50.0, 60.0)}
    segs = [
        Segment("ok", "a", 10.0, 11.0, 0, 0, "0,0"),
        Segment("clamped", "b", 1.2, 2.0, 0, 0, "0,0"),
        Segment("early", "a", 0.5, 2.0, 0, 0, "0,0"),
        Segment("noinfo", "zzz", 5.0, 6.0, 0, 0, "0,0"),
    ]
    plan = plan_windows(segs, info, num_frames=4, tau_a=1.0, frame_step=5)
    assert [s.uid for s, _ in plan.items] == ["ok", "clamped"]
    assert plan.clamped == 1 and plan.dropped_unobservable == 1 and plan.dropped_no_video_info == 1
    # frame_step is in each video's own frames: stride 5 at 30 fps and at 50 fps
    assert plan.items[0][1].frames == (255, 260, 265, 270)
    assert plan.items[1][1].frames == (0, 0, 5, 10)  # t_end 0.2 s at 50 fps -> frame 10
    with_default = plan_windows(segs, info, 4, 1.0, sample_fps=10.0, default_fps=25.0)
    assert with_default.dropped_no_video_info == 0 and len(with_default.items) == 3


def test_per_segment_tau_a_and_draws():
    info = {"a": VideoTiming("a", 30.0)}
    segs = [Segment("x", "a", 10.0, 11.0, 0, 0, "0,0")] * 2
    plan = plan_windows(segs, info, 1, [1.0, 2.0], sample_fps=30.0)
    assert [w.end_frame for _, w in plan.items] == [270, 240]
    taus = draw_tau_a(100, 1.0, (0.5, 2.0), random.Random(0))
    assert min(taus) >= 0.5 and max(taus) <= 2.0 and len(set(taus)) == 100
    assert draw_tau_a(3, 1.0, None, random.Random(0)) == [1.0, 1.0, 1.0]


def test_anticipation_steps():
    assert anticipation_steps(1.0, 16 / 30) == 2  # 1.875 steps -> the 2nd step holds the start
    assert anticipation_steps(1.0, 0.5) == 2  # exactly 2 steps: the start ends step 2
    assert anticipation_steps(1.0, 2.0) == 1
    assert anticipation_steps(0.0, 0.5) == 1
