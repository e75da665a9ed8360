"""Value checks shared by both families' settings: each raises ``ValueError`` with one line naming the setting.

The pipelines' settings dataclasses call these in their ``validate()`` before any model loads, so the CLI and
the Python API refuse the same values with the same message (the CLI prints it and exits 2).
"""

from __future__ import annotations

import math
import os

SEED_MAX = 2**32 - 1  # seeds are reduced into [0, 2**32) (the official scripts draw from that range)


def positive_int(name: str, value, maximum: int | None = None) -> int:
    """``value`` as an int >= 1 (and <= ``maximum`` when given); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    v = int(value)
    if v < 1:
        raise ValueError(f"{name} must be at least 1, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {v}")
    return v


def finite(name: str, value, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float within [low, high] (bounds optional); ValueError otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and v < low or high is not None and v > high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v:g}")
    return v


def fps(value) -> float:
    """Frames per second: finite and > 0 (at most 1000)."""
    v = finite("fps", value, 0.0, 1000.0)
    if v <= 0:
        raise ValueError(f"fps must be greater than 0, got {v:g}")
    return v


def crf(value) -> int:
    """H.264 constant rate factor: an integer in [0, 51] (libx264's range)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 51:
        raise ValueError(f"crf must be a whole number in [0, 51], got {value!r}")
    return value


def seed(value) -> int:
    """Any integer seed, reduced by the documented rule ``seed mod 2**32`` (negative seeds wrap around)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"seed must be a whole number, got {value!r}")
    return value % (SEED_MAX + 1)


def env_number(name: str, default: float, low: float = 0.0, whole: bool = False) -> float:
    """The environment variable ``name`` as a finite number >= ``low`` (``whole``: a whole number, returned as an
    int), or ``default`` when it is unset or empty. Raises ValueError naming the variable and its value
    otherwise (a tuning variable read when a module loads or a model runs must not fail as a bare
    ``float()`` / ``int()`` error, or overflow)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = "a whole number" if whole else "a finite number"
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < low or (whole and not v.is_integer()):
        raise ValueError(f"${name} must be {kind} >= {low:g}, got {raw!r}")
    return int(v) if whole else v


class ConfigKeys(dict):
    """A checkpoint config section (JSON object) that records which keys its readers looked up.

    ``get`` / ``[]`` mark a key read (``in`` does not: layout detection is not use); nested objects come
    back as ``ConfigKeys`` too, so :meth:`unread` lists every key, dotted from the root (``"vae.dims"``),
    that no reader used: the names ``mlx_video convert --verbose`` shows as ignored.
    """

    def __init__(self, data: dict, prefix: str = ""):
        super().__init__(data)
        self.prefix, self.read, self._kids = prefix, set(), {}

    def __getitem__(self, key):
        self.read.add(key)
        if key not in self:
            raise KeyError(self.prefix + key)  # the dotted name, for "missing key" messages
        value = super().__getitem__(key)
        if isinstance(value, dict) and not isinstance(value, ConfigKeys):
            value = self._kids.setdefault(key, ConfigKeys(value, f"{self.prefix}{key}."))
        return value

    def get(self, key, default=None):
        if key in self:
            return self[key]
        self.read.add(key)
        return default

    def unread(self) -> list[str]:
        """Dotted names of the keys never read (a nested object read as a whole counts as read)."""
        out = [self.prefix + k for k in self if k not in self.read]
        for kid in self._kids.values():
            out += kid.unread()
        return out
