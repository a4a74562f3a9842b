"""PCA-to-RGB: one projection, fitted on the target, colours both target and prediction."""

from __future__ import annotations

import pytest
import torch

from hjepa.viz.pca import fit_pca, pca_rgb_pair


def _features(seed: int = 0, n: int = 600, d: int = 24):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    coeff = torch.randn(n, d, generator=g) * torch.tensor([5.0, 3.0, 2.0] + [0.1] * (d - 3))
    return coeff @ basis.T + 1.0, basis


def test_fit_pca_finds_the_planted_directions():
    x, basis = _features()
    proj = fit_pca(x)
    assert proj.components.shape == (3, 24)
    assert torch.allclose(proj.components @ proj.components.T, torch.eye(3), atol=1e-4)
    # Up to sign, component i is basis column i (variances 25 > 9 > 4 >> 0.01).
    overlap = (proj.components @ basis[:, :3]).abs()
    assert torch.allclose(overlap, torch.eye(3), atol=0.1)
    assert (proj.explained[:-1] >= proj.explained[1:]).all() and proj.explained.sum() > 0.95
    # Deterministic sign: the largest loading of every component is positive.
    assert (proj.components.gather(1, proj.components.abs().argmax(1, keepdim=True)) > 0).all()


def test_rgb_range_and_shapes():
    x, _ = _features()
    proj = fit_pca(x)
    grid = x[:96].reshape(6, 4, 4, 24)  # [T, Hg, Wg, D]
    rgb = proj.to_rgb(grid)
    assert rgb.shape == (6, 4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert proj.to_uint8(grid).dtype == torch.uint8
    with pytest.raises(ValueError, match="width"):
        proj.to_rgb(torch.randn(3, 7))


def test_prediction_and_target_use_the_same_components():
    target, _ = _features(0)
    # A prediction with a different spread (smaller, shifted): a refit would stretch its colours.
    pred = 0.3 * target + 0.5 * torch.randn_like(target)
    rgb_t, rgb_p, proj = pca_rgb_pair(target, pred)
    fitted_on_target = fit_pca(target)
    assert torch.equal(proj.components, fitted_on_target.components)
    assert torch.allclose(rgb_t, fitted_on_target.to_rgb(target))
    assert torch.allclose(rgb_p, fitted_on_target.to_rgb(pred))
    # Not refitted on the prediction: its own PCA would colour it differently.
    assert not torch.allclose(rgb_p, fit_pca(pred).to_rgb(pred), atol=0.05)
    # The same feature vector gets the same colour on both sides.
    rgb_t2, rgb_p2, _ = pca_rgb_pair(target, target[:10].clone())
    assert torch.equal(rgb_t2[:10], rgb_p2)


def test_fit_needs_two_vectors():
    with pytest.raises(ValueError, match="at least 2"):
        fit_pca(torch.randn(1, 8))
