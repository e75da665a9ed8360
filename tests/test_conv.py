"""Chunked conv3d equals mx.conv3d whatever the chunking (frames, row bands, strides, padding); the
edge-replicated formulations equal it on the padded input."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.nn.conv import conv3d


@pytest.mark.parametrize(
    "stride,padding,budget",
    [
        ((1, 1, 1), (0, 1, 1), 1 << 40),  # whole clip at once
        ((1, 1, 1), (0, 1, 1), 60_000),  # groups of frames
        ((1, 1, 1), (1, 1, 1), 9_000),  # row bands of one frame
        ((2, 2, 2), (0, 1, 0), 5_000),  # strided, uneven padding, bands
    ],
)
def test_chunked_conv3d_equals_mx_conv3d(stride, padding, budget):
    x = mx.random.normal((1, 7, 10, 9, 4), key=mx.random.key(0))
    w = mx.random.normal((5, 3, 3, 3, 4), key=mx.random.key(1))
    ref = mx.conv3d(x, w, stride=stride, padding=padding)
    out = conv3d(x, w, stride=stride, padding=padding, max_unfold_bytes=budget)
    assert out.shape == ref.shape
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("budget", [1 << 40, 60_000, 9_000, 2_000])
@pytest.mark.parametrize("split", [(2, 1), (1, 6), (3, 4)])
def test_parts_and_causal_padding_equal_the_joined_input(split, budget):
    """A list of time pieces with (front, 0) time padding is the concatenated, padded input, whatever the
    chunking: the causal cache's frames plus the new ones, joined only window by window."""
    x = mx.random.normal((1, sum(split), 10, 9, 4), key=mx.random.key(0))
    w = mx.random.normal((5, 3, 3, 3, 4), key=mx.random.key(1))
    parts = [x[:, : split[0]], x[:, split[0] :]]
    for front in (0, 1, 2):
        ref = mx.conv3d(mx.pad(x, [(0, 0), (front, 0), (1, 1), (1, 1), (0, 0)]), w)
        out = conv3d(parts, w, padding=((front, 0), 1, 1), max_unfold_bytes=budget)
        assert out.shape == ref.shape
        np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-5, atol=1e-5)
    ref = mx.conv3d(mx.pad(x, [(0, 0), (0, 0), (0, 1), (2, 0), (0, 0)]), w, stride=(1, 2, 2))
    out = conv3d(parts, w, stride=(1, 2, 2), padding=(0, (0, 1), (2, 0)), max_unfold_bytes=budget)
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-5, atol=1e-5)


def test_bad_padding_raises():
    x, w = mx.zeros((1, 3, 4, 4, 2)), mx.zeros((1, 3, 3, 3, 2))
    with pytest.raises(ValueError, match="padding"):
        conv3d(x, w, padding=(0, -1, 0))


@pytest.mark.parametrize("mode", ["native", "frames", "taps", "stacked"])
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_replicate_frames_modes_equal_mx_conv3d_on_the_padded_input(mode, padding):
    """conv3d_replicate_frames, every formulation, against mx.conv3d on edge-replicated, spatially padded frames."""
    from mlx_video.nn.conv import conv3d_replicate_frames, pad_height_width

    x = mx.random.normal((2, 5, 6, 7, 4), key=mx.random.key(3))
    w = mx.random.normal((3, 3, 3, 3, 4), key=mx.random.key(4))
    for lead in (0, 1, 2):
        framed = mx.concatenate([x[:, :1]] * lead + [x] + [x[:, -1:]] * (2 - lead), axis=1)
        ref = mx.conv3d(pad_height_width(framed, 1, 1, padding), w)
        out = conv3d_replicate_frames(x, w, lead, padding, mode)
        assert out.shape == ref.shape == (2, 5, 6, 7, 3)
        np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unknown conv3d mode"):
        conv3d_replicate_frames(x, w, 1, padding, "bogus")
    with pytest.raises(ValueError, match="lead"):
        conv3d_replicate_frames(x, w, 3, padding, mode)
