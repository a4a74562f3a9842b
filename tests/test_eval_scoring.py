"""``score_model`` on known answers: an oracle whose predictions are the targets, and a
model that copies the present. No training: an untrained tiny model supplies the targets."""

from __future__ import annotations

import math

import pytest
import torch

from hjepa.data.dataset import ClipCollator, SyntheticClipDataset
from hjepa.data.sampling import ClipSampler
from hjepa.data.synthetic import SyntheticConfig, SyntheticVideos
from hjepa.data.transforms import to_model_input
from hjepa.eval.scoring import score_model, step_labels
from hjepa.models.hierarchy import HJEPA

from test_eval_tiny_model import tiny_config


class Rewired(torch.nn.Module):
    """An HJEPA whose ``predict`` returns the true future (``oracle``) or the present (``copy``)."""

    def __init__(self, model: HJEPA, mode: str) -> None:
        super().__init__()
        self.inner, self.mode = model, mode
        self.levels, self.config = model.levels, model.config

    num_levels = property(lambda self: self.inner.num_levels)

    def window_slots(self, level):
        return self.inner.window_slots(level)

    def patch_grid(self, shape):
        return self.inner.patch_grid(shape)

    def rollout_steps(self, *args, actions=None):
        return self.inner.rollout_steps(*args, actions=actions)

    def encode(self, x):
        return self.inner.encode(x)

    def predict(self, x, encodings=None, actions=None):
        preds = self.inner.predict(x, encodings=encodings, actions=actions)
        for p in preds:
            if self.mode == "oracle":
                p.pred = p.target.clone()
            else:
                p.pred = p.present[:, :, None].expand_as(p.pred).clone()
        return preds


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = HJEPA(tiny_config()).eval()
    syn = SyntheticConfig(resolution=32, num_train_videos=1, num_val_videos=8)
    sampler = ClipSampler(8, 4)
    data = SyntheticClipDataset(SyntheticVideos(syn), "validation", sampler, train=False)
    collate = ClipCollator(sampler.num_frames, 32, num_objects=syn.num_objects)
    batches = [collate([data[i] for i in range(j, j + 4)]) for j in (0, 4)]
    return model, (lambda: iter(batches))


def test_oracle_retrieves_every_future_and_has_no_error(setup):
    model, batches = setup
    m = score_model(Rewired(model, "oracle"), batches, to_model_input, rollout_level1=True).metrics
    for k in (1, 2):
        for j in (1, 2):
            key = f"level{k}/h{j}"
            assert m[f"{key}/l1"] < 1e-6 and m[f"{key}/copy_ratio"] < 1e-5
            assert m[f"{key}/retrieval_top1"] == 1.0 and m[f"{key}/retrieval_mrr"] == 1.0
            assert m[f"{key}/retrieval_clips_top1"] == 1.0
            # 4 clips x S steps, minus the present: chance is 1 / (4 S - 1).
            steps = 16 if k == 1 else 4
            assert m[f"{key}/retrieval_chance_top1"] == pytest.approx(1 / (4 * steps - 1))
            assert m[f"{key}/retrieval_clips_chance_top1"] == pytest.approx(1 / 4)
    # The (untrained) level 1 rolled out to level 2's times is far from the oracle.
    assert m["level2/h2/level1_rollout_retrieval_mrr"] < 0.9
    assert all(math.isfinite(v) for v in m.values() if not isinstance(v, str))
    assert all(m[f"level{k}/h{j}/skill"] == pytest.approx(1.0) for k in (1, 2) for j in (1, 2))


def test_copy_model_matches_the_copy_baseline(setup):
    model, batches = setup
    m = score_model(Rewired(model, "copy"), batches, to_model_input, rollout_level1=False).metrics
    for k in (1, 2):
        for j in (1, 2):
            key = f"level{k}/h{j}"
            assert m[f"{key}/copy_ratio"] == pytest.approx(1.0)
            assert m[f"{key}/retrieval_top1"] == pytest.approx(m[f"{key}/copy_retrieval_top1"])
            assert m[f"{key}/cosine"] == pytest.approx(m[f"{key}/copy_cosine"])
            assert f"{key}/level1_rollout_retrieval_top1" not in m
            assert m[f"{key}/skill"] <= 1e-6  # copying is one of the baselines
    # Seconds from frame indices and fps: 8 fps, level-1 step 2 frames, level-2 step 8 frames.
    assert m["level1/step_s"] == pytest.approx(0.25) and m["level2/h2/horizon_s"] == pytest.approx(2.0)


def test_probe_data_and_step_labels(setup):
    model, batches = setup
    res = score_model(model, batches, to_model_input, rollout_level1=False, probe_max_steps=40)
    assert res.num_clips == 8 and res.skipped == 0
    f1, g1, fac1 = res.probe_data[0].cat()
    assert f1.shape == (40, 16, 64) and len(g1) == 40 and set(fac1) == {"activity", "position", "label"}
    f2, g2, fac2 = res.probe_data[1].cat()
    assert f2.shape == (32, 16, 64) and torch.equal(torch.unique(g2), torch.arange(8))  # level 2 keeps 16 tokens
    assert fac2["position"].shape == (32, 8)
    batch = next(batches())
    labels = step_labels(batch, torch.tensor([7, 15]))
    assert torch.equal(labels["activity"], batch["activity"][:, [7, 15]])
    assert torch.equal(labels["position"], batch["positions"][:, [7, 15]].flatten(2))
