"""A model trained on 4-window clips predicts 8-window clips as well past its training length
as within it: predictor time is relative and its context bounded (issue: measurements)."""

from __future__ import annotations

import torch

from test_eval_tiny_model import NUM_WINDOWS, synthetic_config, tiny_export  # noqa: F401 - session fixture

from hjepa.data.dataset import ClipCollator, SyntheticClipDataset
from hjepa.data.sampling import ClipSampler
from hjepa.data.synthetic import SyntheticVideos
from hjepa.data.transforms import to_model_input

LONG_WINDOWS = 2 * NUM_WINDOWS
MAX_RATIO = 1.10  # mean error past the training length / mean error within it (fixed beforehand)


def test_predictions_past_the_training_length_are_as_good(tiny_export):  # noqa: F811
    import hjepa

    model = hjepa.load_pretrained(tiny_export).eval()
    syn = synthetic_config()
    sampler = ClipSampler(model.config.frames_per_window, LONG_WINDOWS)
    data = SyntheticClipDataset(SyntheticVideos(syn), "validation", sampler, train=False)
    collate = ClipCollator(sampler.num_frames, syn.resolution, num_objects=syn.num_objects)
    batch = collate([data[i] for i in range(32)])
    with torch.no_grad():
        preds = model.predict(to_model_input(batch["clip"]))
    trained_frames = NUM_WINDOWS * model.config.frames_per_window
    for k, p in enumerate(preds):
        err = (p.pred - p.target).abs().mean(dim=(0, 3, 4))  # [S, h]
        inside = p.valid & (p.target_end_frames < trained_frames)
        past = p.valid & (p.context_end_frames[:, None] >= trained_frames)
        ratio = float(err[past].mean() / err[inside].mean())
        print(f"level {k + 1}: error within {float(err[inside].mean()):.4f}, past {float(err[past].mean()):.4f}, "
              f"ratio {ratio:.3f}")
        assert inside.any() and past.any()
        assert ratio <= MAX_RATIO, (k + 1, ratio)
