"""mlx_video.conditioning: anchors on the latent grid (placement, strength, checks) and channel conditions."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.conditioning import ChannelCondition, LatentAnchor, add_noise, anchor_arrays, blend_clean

SHAPE = (1, 5, 2, 3, 4)  # [1, T, h, w, C]


def _latent(n, seed=0):
    return mx.random.normal((1, n, 2, 3, 4), key=mx.random.key(seed))


def test_anchor_arrays_place_the_anchors():
    a, b = _latent(1, 1), _latent(2, 2)
    mask, clean = anchor_arrays([LatentAnchor(a, 0), LatentAnchor(b, 3, 0.25)], SHAPE)
    assert mask.shape == (1, 5, 1, 1, 1) and clean.shape == SHAPE
    np.testing.assert_allclose(np.array(mask).ravel(), [0.0, 1.0, 1.0, 0.75, 0.75])
    np.testing.assert_array_equal(np.array(clean[:, 0:1]), np.array(a))
    np.testing.assert_array_equal(np.array(clean[:, 3:5]), np.array(b))
    assert not np.array(clean[:, 1:3]).any()
    x = mx.ones(SHAPE)
    np.testing.assert_allclose(np.array(blend_clean(x, mask, clean)), np.array(mask * x + (1 - mask) * clean))
    assert blend_clean(x, None, clean) is x
    noise = mx.full(SHAPE, 2.0)
    np.testing.assert_allclose(
        np.array(add_noise(x, noise, mask, 0.5)), np.array(noise * mask * 0.5 + x * (1 - mask * 0.5))
    )
    np.testing.assert_allclose(np.array(add_noise(x, noise, None, 0.25)), np.array(noise * 0.25 + x * 0.75))


@pytest.mark.parametrize("frame, n", [(-1, 1), (5, 1), (4, 2), (-3, 2)])
def test_anchor_outside_the_grid_is_a_value_error(frame, n):
    # (5, 1) and (4, 2) passed the old check `not 0 <= frame and frame + n <= T` and hit an IndexError
    with pytest.raises(ValueError, match=f"latent frame {frame} with {n} frames does not fit 5"):
        anchor_arrays([LatentAnchor(_latent(n), frame)], SHAPE)


def test_anchor_checks():
    with pytest.raises(ValueError, match="does not match latent grid"):
        anchor_arrays([LatentAnchor(mx.zeros((1, 1, 2, 2, 4)), 0)], SHAPE)
    with pytest.raises(ValueError, match="strength must be in"):
        anchor_arrays([LatentAnchor(_latent(1), 0, 1.5)], SHAPE)
    with pytest.raises(ValueError, match="two anchors on latent frame 1"):
        anchor_arrays([LatentAnchor(_latent(2), 0), LatentAnchor(_latent(1), 1)], SHAPE)


def test_channel_condition():
    mask, lat = mx.ones((1, 5, 1, 1, 4)), _latent(5)
    c = ChannelCondition(mask, lat)
    y = c.y()
    assert y.shape == (1, 5, 2, 3, 8) and y.dtype == mx.float32
    np.testing.assert_array_equal(np.array(c.flip_time().latent), np.array(lat)[:, ::-1])
