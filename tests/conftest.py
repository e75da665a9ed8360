import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("MLX_ENABLE_TF32", "0")

ASSETS = ROOT / "assets"
IMAGES = ASSETS / "images"

try:  # keep the oracles from fighting the 2-core machine
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - oracles are always installed in CI
    pass
