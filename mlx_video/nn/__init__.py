"""Layers shared by the Wan and LTX-2 families."""
