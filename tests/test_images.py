"""mlx_video.io.images: loading every image mode by one rule, the decompression-bomb guard, and each
resizer against the torch function its reference calls."""

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mlx_video.io.images import (
    ImageError,
    bicubic_resize,
    bilinear_cover_crop,
    h264_roundtrip,
    lanczos_cover_crop,
    load_image,
    to_array,
)
from tests.helpers import IMAGES
from tests.oracles import rel_err


def _rgb(h=30, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _load(tmp_path, im: Image.Image, name="x.png", **kw) -> np.ndarray:
    p = tmp_path / name
    im.save(p, **kw)
    got = load_image(p)
    assert got.mode == "RGB"
    return np.asarray(got)


# ----------------------------------------------------------------------------- loading


def test_alpha_is_dropped_as_the_references_do(tmp_path):
    rgb = _rgb()
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    alpha[0, 0] = 0
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    got = _load(tmp_path, rgba)
    np.testing.assert_array_equal(got, rgb)  # colour kept where alpha is 0 too
    p = tmp_path / "x.png"
    # Wan2.2 generate.py and ltx-pipelines media_io.decode_image read the same pixels
    np.testing.assert_array_equal(got, np.asarray(Image.open(p).convert("RGB")))
    np.testing.assert_array_equal(got, np.array(Image.open(p))[..., :3])
    la = Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA")
    np.testing.assert_array_equal(_load(tmp_path, la), np.repeat(rgb[..., :1], 3, axis=2))


def test_modes_convert_to_rgb(tmp_path):
    rgb = _rgb()
    gray = rgb[..., 0]
    np.testing.assert_array_equal(_load(tmp_path, Image.fromarray(gray, "L")), np.repeat(gray[..., None], 3, 2))
    pal = Image.fromarray(rgb).quantize(16)
    want = np.asarray(pal.convert("RGB"))
    assert pal.mode == "P" and not np.array_equal(np.asarray(pal)[..., None].repeat(3, 2), want)
    np.testing.assert_array_equal(_load(tmp_path, pal), want)  # colours, not palette indices
    pal.info["transparency"] = 0
    np.testing.assert_array_equal(_load(tmp_path, pal, transparency=0), want)
    cmyk = Image.new("CMYK", (8, 4), (255, 0, 0, 0))  # pure cyan
    np.testing.assert_array_equal(_load(tmp_path, cmyk, "c.jpg", quality=100)[2, 4], [0, 255, 255])
    np.testing.assert_array_equal(_load(tmp_path, Image.fromarray(rgb).convert("1"), "b.png")[..., 0] % 255, 0)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    g16 = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    im = Image.fromarray(g16)
    assert im.mode.startswith("I;16")
    got = _load(tmp_path, im)
    want = np.round(g16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(got, np.repeat(want[..., None], 3, 2))
    assert got.max() == 255 and got.min() == 0 and len(np.unique(got)) > 200  # not all white


@pytest.mark.parametrize(
    "orientation, turn",
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)],
)
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    rgb = _rgb(20, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "o.png"
    Image.fromarray(rgb).save(p, exif=exif)
    got = np.asarray(load_image(p))
    np.testing.assert_array_equal(got, np.asarray(Image.fromarray(rgb).transpose(turn)))
    assert got.shape[:2] == ((20, 30) if orientation == 3 else (30, 20))


def test_decompression_bomb_is_an_image_error_with_the_size(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.fromarray(_rgb(100, 120)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    for limit in (5000, 12000 // 2 - 1, 12000 - 1):  # above 2x the limit Pillow raises, above 1x it warns
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ImageError, match=rf"big.png has 12,000 pixels, more than .* limit of {limit:,}"):
            load_image(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12000)
    assert load_image(p).size == (120, 100)


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="bad.png"):
        load_image(bad)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes((IMAGES / "chelsea.png").read_bytes()[:5000])
    with pytest.raises(ImageError, match="trunc.png"):
        load_image(trunc)


# ----------------------------------------------------------------------------- resizers


@pytest.mark.parametrize(
    "src,dst",
    [
        ((40, 52), (28, 28)),
        ((9, 13), (28, 20)),
        ((2, 3), (5, 4)),
        ((120, 208), (224, 224)),
        ((480, 832), (224, 224)),
        ((224, 224), (224, 224)),
    ],
)
def test_bicubic_resize_matches_torch(src, dst):
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, *src, 3)).astype(np.float32)
    want = (
        F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=dst, mode="bicubic", align_corners=False)
        .permute(0, 2, 3, 1)
        .numpy()
    )
    got = np.array(bicubic_resize(mx.array(x), *dst))
    # measured: max abs <= 1.7e-6, rel <= 5e-7 (float64 tap weights would be 1e-4 / 3e-5 off at 480x832)
    assert np.abs(got - want).max() < 5e-6
    assert rel_err(got, want) < 2e-6
    np.testing.assert_array_equal(np.array(bicubic_resize(x[0], *dst)), got[0])  # one [H, W, C] image


@pytest.mark.parametrize(
    "src,dst", [((300, 451), (128, 192)), ((40, 30), (64, 64)), ((64, 64), (64, 64)), ((33, 97), (32, 32))]
)
def test_bilinear_cover_crop_matches_ltx_pipelines(src, dst):
    from ltx_pipelines.utils.media_io import resize_and_center_crop

    x = np.random.default_rng(2).uniform(0, 255, size=(*src, 3)).astype(np.float32)
    want = resize_and_center_crop(torch.from_numpy(x), *dst)[0, :, 0].permute(1, 2, 0).numpy()
    got = bilinear_cover_crop(x, *dst)
    assert got.shape == (*dst, 3) and got.dtype == np.float32
    # float32 rounding of the source coordinates (torch computes them in float32): measured <= 7.1e-3 on
    # values up to 255 (451 -> 193 columns), relative <= 1.2e-5
    assert np.abs(got - want).max() < 2e-2 and rel_err(got, want) < 4e-5
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        bilinear_cover_crop(x[..., 0], *dst)


def test_lanczos_cover_crop_as_wan_ti2v():
    img = load_image(IMAGES / "chelsea.png")  # 451 x 300
    out = lanczos_cover_crop(img, 256, 320)
    assert out.size == (320, 256)
    # Wan2.2 textimage2video.WanTI2V.i2v: scale = max(W/w, H/h), LANCZOS, centre crop
    scale = max(320 / 451, 256 / 300)
    big = img.resize((round(451 * scale), round(300 * scale)), Image.LANCZOS)
    x1, y1 = (big.width - 320) // 2, (big.height - 256) // 2
    np.testing.assert_array_equal(to_array(out), to_array(big.crop((x1, y1, x1 + 320, y1 + 256))))


@pytest.mark.parametrize("crf", [33, 0])
def test_h264_roundtrip_as_ltx_pipelines(crf):
    from ltx_pipelines.utils.media_io import preprocess

    img = np.asarray(load_image(IMAGES / "chelsea.png"))[:101, :151]  # odd sides: cropped to even
    got = h264_roundtrip(img, crf)
    np.testing.assert_array_equal(got, preprocess(img, crf))
    if crf:
        assert got.shape == (100, 150, 3) and got.dtype == np.uint8 and not np.array_equal(got, img[:100, :150])
    else:
        assert got is img
