"""The just-in-time block weights benchmark (benchmarks/blockwise.py) at tiny size on the CPU: every kind of mode
runs alone or together and writes its JSON; streamed modes are exact, quantized ones within their error."""

from __future__ import annotations

import json

import pytest

from benchmarks import blockwise


def test_blockwise_tiny_writes_json(tmp_path):
    out = tmp_path / "bw.json"
    modes = "bf16,qmm-affine8,dequant-affine8,dequant-mxfp4,stream-1,stream-2-affine8"
    blockwise.main(["--size", "tiny", "--modes", modes, "--tmp", str(tmp_path), "--out", str(out)])
    r = json.loads(out.read_text())
    assert list(r["rows"]) == modes.split(",") and r["tokens"] == 8
    rows = r["rows"]
    assert rows["stream-1"]["rel_err"] == 0.0 and rows["stream-1"]["resident"] == 1
    assert 0 < rows["dequant-affine8"]["rel_err"] < 0.05 and rows["stream-2-affine8"]["dequantized"]
    assert all(len(x["times_s"]) == 2 and x["median_s"] > 0 for x in rows.values())
    assert list(tmp_path.iterdir()) == [out]  # the stream files are gone


def test_blockwise_modes_parsed():
    assert blockwise.parse_mode("stream-4-mxfp8") == ("stream", 4, "mxfp8")
    assert blockwise.parse_mode("dequant-affine4") == ("dequant", None, "affine4")
    for bad in ("stream-0", "dequant", "qmm-fp3", "stream-x"):
        with pytest.raises(SystemExit):
            blockwise.parse_mode(bad)
