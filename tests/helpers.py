"""Paths the tests share: the repo root and its bundled assets (the repo runs alone from a bare clone)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
IMAGES = ASSETS / "images"
FIXTURES = ROOT / "tests" / "fixtures"
