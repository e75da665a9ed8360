"""Image loading and preparation: every resize / crop the pipelines use, each named by what it does
and the reference it follows.

- :func:`load_image`: a file -> an 8-bit RGB PIL image (one rule for every mode, see there).
- :func:`lanczos_cover_crop`: PIL LANCZOS resize to cover, center crop (Wan2.2 TI2V, the FLF2V last frame).
- :func:`bicubic_resize`: torch ``interpolate(mode="bicubic")`` squash, no crop (Wan CLIP, Wan I2V/FLF2V VAE input).
- :func:`bilinear_cover_crop`: torch ``interpolate(mode="bilinear")`` resize to cover, center crop
  (ltx-pipelines ``resize_and_center_crop``); :func:`h264_roundtrip`: the CRF round trip ltx-pipelines
  gives conditioning images first (``media_io.preprocess``).
- :func:`best_output_size`: Wan2.2's output-size rule; :func:`to_array` / :func:`to_uint8`: [0, 255] <-> [-1, 1].

Arrays are float32 [H, W, 3] in [-1, 1] (channels-last, RGB) unless said otherwise. There is no
"area" resizer: of the references, only musubi-tuner's one-frame control images (``resize_image_to_bucket``:
cv2 ``INTER_AREA`` when shrinking, LANCZOS when enlarging) and ltx-pipelines' IC-LoRA reference
videos (not implemented here) use one. Deviation: one-frame control images go through
:func:`lanczos_cover_crop` in both directions (no cv2 oracle is installed to prove an area resize).
"""

from __future__ import annotations

import math
import re
import warnings
from functools import lru_cache
from pathlib import Path

import mlx.core as mx
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageError(ValueError):
    """An input image is missing, unreadable or otherwise unusable."""


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as an 8-bit RGB PIL image.

    One rule for every mode: the image is turned upright by its EXIF orientation (as a viewer shows
    it), then converted to RGB by Pillow: grayscale is repeated over the channels, palette colours are
    looked up, CMYK goes through Pillow's CMYK -> RGB, 16-bit grayscale (``I;16``, ``I``) is scaled
    to 8 bits (``v / 257``, rounded) first. **Alpha is dropped**: the colour channels are kept as
    stored, transparent pixels included, as both references do (Wan2.2 ``generate.py``:
    ``Image.open(...).convert("RGB")``; ltx-pipelines ``media_io.decode_image``: ``np.array(image)[..., :3]``).
    Deviation: the references do not apply EXIF orientation (an upright photo from a phone would
    reach them sideways).

    Raises ImageError naming the path when it is missing, not a file, not a readable image, or larger
    than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS`` pixels; the message gives
    the image's pixel count and the limit).
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if not path.is_file():
        raise ImageError(f"not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                if im.mode in _SIXTEEN_BIT:
                    a = np.asarray(im, dtype=np.float64)
                    im = Image.fromarray(np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8), "L")
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise ImageError(
            f"image {path} has {size}, more than Pillow's decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels: refusing to decode it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from e


def best_output_size(w: int, h: int, dw: int, dh: int, max_area: int) -> tuple[int, int]:
    """(width, height) multiple of (dw, dh), area <= max_area, aspect closest to w/h.

    Follows Wan2.2 ``wan.utils.utils.best_output_size``: tries fitting the width first and the
    height first and keeps the one whose aspect ratio is closer to the input's. Where the reference
    divides by zero (an aspect so extreme that one side rounds to 0), the other candidate is used;
    raises ValueError when neither fits.
    """
    ratio = w / h
    ow = (max_area * ratio) ** 0.5
    oh = max_area / ow
    ow1 = int(ow // dw * dw)
    oh1 = int(max_area / ow1 // dh * dh) if ow1 else 0
    oh2 = int(oh // dh * dh)
    ow2 = int(max_area / oh2 // dw * dw) if oh2 else 0
    fits = [(ow_, oh_) for ow_, oh_ in ((ow1, oh1), (ow2, oh2)) if ow_ and oh_]
    if not fits:
        raise ValueError(
            f"a {w}x{h} image is too elongated for a {max_area}-pixel output in multiples of "
            f"{dw}x{dh}; give a larger size"
        )
    off = [max(ratio / (a / b), (a / b) / ratio) for a, b in fits]
    return fits[0] if len(fits) == 1 or off[0] < off[1] else fits[1]  # ties go to height-first, as the reference


def lanczos_cover_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """PIL LANCZOS-resize ``img`` to cover height x width (scale = max(W/w, H/h), sizes rounded), then
    center-crop to exactly that size. Follows Wan2.2 TI2V (``textimage2video.WanTI2V.i2v``)."""
    iw, ih = img.size
    scale = max(width / iw, height / ih)
    img = img.resize((round(iw * scale), round(ih * scale)), Image.LANCZOS)
    x1 = (img.width - width) // 2
    y1 = (img.height - height) // 2
    return img.crop((x1, y1, x1 + width, y1 + height))


def _cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel with torch's A = -0.75, for |x| < 2 (float32 in, float32 out)."""
    a = np.float32(a)
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, far).astype(np.float32)


@lru_cache(maxsize=32)
def _bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float32 interpolation matrix equal to torch's bicubic, align_corners=False.

    Source coordinate ``(o + 0.5)·n_in/n_out - 0.5`` (not clamped), four taps around its floor,
    tap indices clamped to the border (replicate). The scale, the coordinate and the tap weights
    are rounded to float32 as torch's CPU kernel does (one rounding of the fused multiply-add):
    exact float64 weights would differ from torch's by up to 6e-5 (832 -> 224), these by <= 1.4e-6.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    src = (np.float64(scale) * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32)
    base = np.floor(src)
    t = src - base
    taps = (_cubic(t + 1), _cubic(t), _cubic(1 - t), _cubic(2 - t))
    m = np.zeros((n_out, n_in), np.float64)
    for k, w in enumerate(taps):
        idx = np.clip(base + k - 1, 0, n_in - 1).astype(np.int64)
        np.add.at(m, (np.arange(n_out), idx), w)
    return m.astype(np.float32)


def bicubic_resize(images, height: int, width: int) -> mx.array:
    """Squash channels-last ``images`` [N, H, W, C] or [H, W, C] (MLX or NumPy) to height x width like
    ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` without antialias and
    without crop (the aspect may drift; values may overshoot the input range, as there). float32
    MLX out, same rank as in; separable, two matmuls. Follows Wan2.1's CLIP preprocessing
    (``wan/modules/clip.py``) and the Wan I2V/FLF2V frames given to the VAE (``image2video.py``)."""
    x = mx.array(images).astype(mx.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    _, h, w, _ = x.shape
    x = mx.einsum("oh,nhwc->nowc", mx.array(_bicubic_matrix(h, height)), x)
    x = mx.einsum("pw,nowc->nopc", mx.array(_bicubic_matrix(w, width)), x)
    return x[0] if single else x


def bilinear_cover_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, no antialias) of ``image`` [H, W, C] to cover height x
    width (scale max(H/h, W/w), sizes rounded up), then center crop; float32 [height, width, C].
    Follows ltx-pipelines ``utils.media_io.resize_and_center_crop`` (torch ``interpolate(mode="bilinear",
    align_corners=False)``). Raises ValueError for an array that is not [H, W, C]."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {img.shape}")
    sh, sw = img.shape[:2]
    scale = max(height / sh, width / sw)
    nh, nw = math.ceil(sh * scale), math.ceil(sw * scale)

    def axis(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = axis(sh, nh)
    x0, x1, fx = axis(sw, nw)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    top, left = (nh - height) // 2, (nw - width) // 2
    return out[top : top + height, left : left + width]


def h264_roundtrip(image: np.ndarray, crf: int) -> np.ndarray:
    """Encode one uint8 RGB frame [H, W, 3] as a one-frame H.264 video (libx264, yuv420p, CRF ``crf``,
    preset veryfast; cropped to even sides) and decode it back: uint8 [H // 2 * 2, W // 2 * 2, 3], so
    that conditioning images carry the compression artefacts the model was trained on. ``crf`` 0
    returns ``image`` as is. Follows ltx-pipelines ``utils.media_io.preprocess`` (default CRF 33)."""
    import io

    import av

    if crf == 0:
        return image
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
        s.height, s.width = h, w
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24").reformat(
            format="yuv420p"
        )
        for pkt in list(s.encode(frame)) + list(s.encode()):
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf) as inp:
        return next(inp.decode(video=0)).to_ndarray(format="rgb24")


def to_array(img: Image.Image) -> np.ndarray:
    """PIL RGB image -> float32 [H, W, 3] in [-1, 1] (x/255 * 2 - 1, as torchvision to_tensor then -0.5/0.5)."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    return (a - 0.5) / 0.5


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[-1, 1] float frames -> uint8 [0, 255], clamped and rounded (as the official save_video)."""
    x = (np.clip(frames, -1.0, 1.0) + 1.0) * 127.5
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
