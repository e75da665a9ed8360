#!/usr/bin/env bash
# Installs the official PyTorch code used as numerical oracles by the parity tests (CPU only).
# torch is pinned first: anything else would pull a multi-GB CUDA build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pip install -q torch==2.13.0
pip install -q -e "$here[test,oracles]"
pip install -q --no-deps wan22==2.2.11 \
  || pip install -q --no-deps "$here/../shared/device/wheels/wan22-2.2.11-py3-none-any.whl"
# ltx-core pulls PyPI's CUDA torchaudio; without its compiled library it runs as pure Python.
ta=$(python -c 'import importlib.util,os;s=importlib.util.find_spec("torchaudio");print(os.path.dirname(s.origin) if s else "")')
[ -n "$ta" ] && rm -f "$ta"/lib/*.so || true
