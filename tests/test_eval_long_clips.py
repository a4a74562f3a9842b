"""A model trained on 4-window clips predicts 8-window clips as well past its training length
as within it: predictor time is relative and its context bounded (issue: measurements)."""

from __future__ import annotations

from test_eval_tiny_model import NUM_WINDOWS, synthetic_config, tiny_export  # noqa: F401 - session fixture

from hjepa.data.dataset import ClipCollator, SyntheticClipDataset
from hjepa.data.sampling import ClipSampler
from hjepa.data.synthetic import SyntheticVideos
from hjepa.data.transforms import to_model_input
from hjepa.eval.long_clips import length_errors

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
    errors = length_errors(model, to_model_input(batch["clip"]), NUM_WINDOWS * model.config.frames_per_window)
    for k, e in enumerate(errors, start=1):
        print(f"level {k}: error within the training length {e.inside:.4f}, past it {e.past:.4f}, ratio {e.ratio:.3f}")
        assert e.ratio <= MAX_RATIO, (k, e.ratio)
