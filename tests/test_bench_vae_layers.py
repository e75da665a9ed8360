"""The Wan VAE layer-by-layer decode benchmark (benchmarks/wan_vae_layers.py) at tiny size on the CPU: both chunks
run whole and step by step, the steps give the whole chunk's uint8 pixels, and every layer is listed."""

from __future__ import annotations

import json

import pytest

from benchmarks import wan_vae_layers


@pytest.mark.parametrize("version,split", [("2.2", "resnet"), ("2.1", "block")])
def test_wan_vae_layers_tiny_writes_json(tmp_path, version, split):
    out = tmp_path / "layers.json"
    wan_vae_layers.main(
        ["--size", "tiny", "--version", version, "--video", "32x48", "--split", split, "--out", str(out)]
    )
    r = json.loads(out.read_text())
    assert [c["chunk"] for c in r["chunks"]] == ["first", "later"]
    first, later = r["chunks"]
    assert first["equal_to_whole"] and later["equal_to_whole"]
    names = [s["step"] for s in later["steps"]]
    assert names[:2] == ["post_quant_conv", "conv_in"] and names[-3:] == ["head", "unpatchify+clip", "to_uint8"]
    assert sum("upsampler" in n for n in names) == 3
    if split == "resnet":
        assert "up3.res2.conv2" in names and "mid.attention" in names
    else:
        assert "up3.res2" in names
    # the first chunk gives one frame, the later one four (latent frames 0 and 1)
    assert first["steps"][-1]["shape"][1] == 1 and later["steps"][-1]["shape"][1] == 4
    assert first["cache_mib"] > 0 and all(s["ms"] >= 0 and s["temp_mib"] >= 0 for s in later["steps"])
    assert later["whole"]["peak_mib"] > 0 and later["whole_lazy"]["equal_to_whole"]
