"""Weights I/O (strict loading, atomic writes, torch-free .pth), images and video writers."""

import json
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from mlx_video.io.images import ImageError, best_output_size, lanczos_cover_crop, load_image, to_array
from mlx_video.io.torch_pickle import load_pth
from mlx_video.io.video import OutputPathError, check_output_path, write_image, write_video
from mlx_video.io.weights import WeightsError, load_safetensors, load_strict, save_safetensors
from tests.helpers import IMAGES


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.LayerNorm(4)


def test_load_strict_names_missing_unused_misshaped():
    m = Tiny()
    good = {"a.weight": mx.zeros((4, 3)), "a.bias": mx.zeros(4), "b.weight": mx.ones(4), "b.bias": mx.zeros(4)}
    load_strict(m, good)
    for bad, name in [
        ({k: v for k, v in good.items() if k != "a.bias"}, "a.bias"),
        (dict(good, extra=mx.zeros(1)), "extra"),
        (dict(good, **{"b.weight": mx.ones(5)}), "b.weight"),
    ]:
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_strict(Tiny(), bad)


def test_pth_reader_matches_torch(tmp_path):
    sd = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(2, 5).bfloat16(),
        "i64": torch.arange(6),
        "strided": torch.randn(4, 6)[:, ::2],
        "scalar": torch.tensor(2.5),
        "f16": torch.randn(7).half(),
    }
    p = tmp_path / "x.pth"
    torch.save(sd, p)
    got = load_pth(p)
    assert set(got) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(
            np.array(got[k].astype(mx.float32) if got[k].dtype == mx.bfloat16 else got[k]),
            v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy(),
        )
    assert got["bf16"].dtype == mx.bfloat16


def test_truncated_checkpoints_raise(tmp_path):
    p = tmp_path / "x.pth"
    torch.save({"w": torch.randn(64, 64)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="x.pth"):
        load_pth(p)
    s = tmp_path / "y.safetensors"
    save_safetensors(s, {"w": mx.ones((64, 64))})
    s.write_bytes(s.read_bytes()[:100])
    with pytest.raises(WeightsError, match="y.safetensors"):
        load_safetensors(s)


def test_malicious_pickle_refused(tmp_path):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "evil.pth"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil()))
    with pytest.raises(WeightsError, match="refusing"):
        load_pth(p)


def test_best_output_size_matches_official():
    from tests import oracles

    ref = oracles.wan_utils().best_output_size

    for w, h in [(512, 512), (1920, 1080), (640, 960), (333, 777)]:
        for area in (704 * 1280, 480 * 832, 256 * 256):
            assert best_output_size(w, h, 32, 32, area) == ref(w, h, 32, 32, area)


def test_images_modes_and_errors(tmp_path):
    from PIL import Image

    gray = tmp_path / "g.png"
    Image.new("L", (40, 30), 128).save(gray)
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(rgba)
    for p in (gray, rgba):
        im = load_image(p)
        assert im.mode == "RGB"
        a = to_array(lanczos_cover_crop(im, 64, 32))
        assert a.shape == (64, 32, 3) and a.dtype == np.float32 and -1 <= a.min() <= a.max() <= 1
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="bad.png"):
        load_image(bad)
    assert load_image(IMAGES / "astronaut.png").mode == "RGB"


def test_video_and_png_writers(tmp_path):
    import av

    frames = (np.random.default_rng(0).random((9, 48, 64, 3)) * 255).astype(np.uint8)
    out = write_video(tmp_path / "v.mp4", frames, 24, {"prompt": "x"})
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        assert (n, s.width, s.height, int(s.average_rate)) == (9, 64, 48, 24)
        assert json.loads(c.metadata["comment"])["prompt"] == "x"
    png = write_image(tmp_path / "i.png", frames[0], {"seed": 1})
    from PIL import Image

    assert json.loads(Image.open(png).info["parameters"]) == {"seed": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.png", "v.mp4"]  # no temp files left


def test_output_path_checks(tmp_path):
    with pytest.raises(OutputPathError, match="suffix"):
        check_output_path(tmp_path / "x.avi")
    with pytest.raises(OutputPathError, match="directory"):
        d = tmp_path / "d.mp4"
        d.mkdir()
        check_output_path(d)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores permissions: use a path under a regular file instead
            f = tmp_path / "file"
            f.write_text("")
            with pytest.raises(OutputPathError):
                check_output_path(f / "x.mp4")
        else:
            with pytest.raises(OutputPathError, match="cannot write"):
                check_output_path(ro / "x.mp4")
    finally:
        ro.chmod(0o700)


def test_best_output_size_extreme_aspect_is_a_clear_error():
    with pytest.raises(ValueError, match="too elongated"):
        best_output_size(2000, 100, 32, 32, 96 * 64)
    from tests import oracles

    ref = oracles.wan_utils().best_output_size  # where the reference does not divide by zero, we agree
    assert best_output_size(2000, 100, 32, 32, 704 * 1280) == ref(2000, 100, 32, 32, 704 * 1280)


def test_pth_reader_takes_module_state_dicts_tied_weights_and_nesting(tmp_path):
    """What torch.save really writes: an OrderedDict with ``_metadata`` (BUILD), tied weights sharing one
    storage, views into a larger storage, a nested {"state_dict": ...}; all under the checked reader."""
    m = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False))
    m[1].weight = m[0].weight  # tied
    sd = m.state_dict()
    big = torch.arange(24.0)
    sd["view"] = big[4:16].view(3, 4)
    p = tmp_path / "m.pth"
    torch.save({"state_dict": sd}, p)
    got = load_pth(p)["state_dict"]
    assert set(got) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(np.array(got[k]), v.numpy())
