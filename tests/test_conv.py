"""Chunked conv3d equals mx.conv3d whatever the chunking (frames, row bands, strides, padding)."""

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
