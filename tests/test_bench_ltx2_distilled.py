"""benchmarks/ltx2_distilled.py's MLX side with an 8-bit transformer streamed from the random weights file it
writes (``--quantize 8 --stream-blocks 1``) runs at tiny size on the CPU and writes its JSON record."""

from __future__ import annotations

import json


def test_ltx2_distilled_quantized_streamed_tiny_writes_json(tmp_path):
    from benchmarks import ltx2_distilled

    out, tmp = tmp_path / "ltx.json", tmp_path / "weights"
    tmp.mkdir()
    argv = ["--size", "tiny", "--skip-reference", "--warmup", "0", "--repeat", "1", "--video", "9x64x64"]
    argv += ["--text-tokens", "16", "--quantize", "8", "--stream-blocks", "1", "--tmp-dir", str(tmp), "--out", str(out)]
    ltx2_distilled.main(argv)
    r = json.loads(out.read_text())
    m = r["mlx"]
    assert r["bench"] == "ltx2_distilled" and r["video"] == "9x64x64" and "official" not in r
    assert m["quantize"] == 8 and m["stream_blocks"] == 1 and "8-bit" in m["compute"] and "1 resident" in m["compute"]
    assert 0 < m["transformer_file_gib"] < m["param_gib"] and m["estimate_gib"] > 0
    for k in ltx2_distilled.STAGES:
        assert m["stages"][k]["median_s"] >= 0 and m["stages"][k]["peak_gib"] > 0
    assert list(tmp.iterdir()) == []  # the random weights folder is removed
