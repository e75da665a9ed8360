"""Image loading and the resize policies the official pipelines use.

Images are returned as float32 NumPy arrays [H, W, 3] in [-1, 1] (channels-last, RGB).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An input image is missing, unreadable or otherwise unusable."""


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as an RGB PIL image (grayscale, palette and RGBA are converted, alpha dropped).

    Raises ImageError naming the path when it is missing, not a file, or not a readable image.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if not path.is_file():
        raise ImageError(f"not a file: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "RGBA" or im.mode == "LA" or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            return im.convert("RGB")
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
        raise ValueError(f"a {w}x{h} image is too elongated for a {max_area}-pixel output in multiples of "
                         f"{dw}x{dh}; give a larger size")
    off = [max(ratio / (a / b), (a / b) / ratio) for a, b in fits]
    return fits[0] if len(fits) == 1 or off[0] < off[1] else fits[1]  # ties go to height-first, as the reference


def cover_resize_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    """LANCZOS-resize ``img`` to cover (width, height), then center-crop to exactly that size.

    Follows Wan2.2 TI2V (``textimage2video.WanTI2V.i2v``): scale = max(W/w, H/h), size rounded.
    """
    iw, ih = img.size
    scale = max(width / iw, height / ih)
    img = img.resize((round(iw * scale), round(ih * scale)), Image.LANCZOS)
    x1 = (img.width - width) // 2
    y1 = (img.height - height) // 2
    return img.crop((x1, y1, x1 + width, y1 + height))


def to_array(img: Image.Image) -> np.ndarray:
    """PIL RGB image -> float32 [H, W, 3] in [-1, 1] (x/255 * 2 - 1, as torchvision to_tensor then -0.5/0.5)."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    return (a - 0.5) / 0.5


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[-1, 1] float frames -> uint8 [0, 255], clamped and rounded (as the official save_video)."""
    x = (np.clip(frames, -1.0, 1.0) + 1.0) * 127.5
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
