#!/usr/bin/env bash
# The whole-run GPU measurements of issue 11, as run on the lent H100 (see benchmarks/README.md).
#   bash benchmarks/gpu_issue11.sh 5b      # TI2V-5B 121x704x1280: t2v, ti2v, mi2v (3 images), 3 steps
#   bash benchmarks/gpu_issue11.sh a14b    # i2v-A14B 81x480x832, 2 steps (one expert each)
#   bash benchmarks/gpu_issue11.sh quant   # quant_modes --size full
#   bash benchmarks/gpu_issue11.sh budget  # ti2v with --budget 11 and 20 (the planner's choice, measured)
#   bash benchmarks/gpu_issue11.sh blockwise  # benchmarks.blockwise: one process per mode (90 s each) + crossover
# SIZE=tiny runs the same at tiny size (CPU smoke test). JSON per run under $OUT (default /tmp/gpu_issue11).
# Every run is bf16 DiT/text, bf16 VAE, sequential CFG. When the tokenizer's packages are missing
# (tokenizers, ftfy, regex), the text contexts are injected (--inject-context) and the JSON says so.
set -u
size=${SIZE:-full}
out=${OUT:-/tmp/gpu_issue11}
mkdir -p "$out"
py=${PYTHON:-python3}
ctx=""
$py -c "import tokenizers, ftfy, regex" 2>/dev/null || { ctx="--inject-context"; echo "no tokenizer packages: injected contexts"; }
common="--size $size --vae-dtype bfloat16 --sequential-cfg $ctx"
run() {  # name, seconds, args...
  local name=$1 secs=$2; shift 2
  echo "== $name: $*"
  timeout "$secs" $py -m benchmarks.e2e $common "$@" --out "$out/e2e_${name}_${size}.json" 2>&1 | tail -n 14
}
for what in "$@"; do
  case $what in
    5b)
      run t2v 200 --case t2v --steps 3
      run ti2v 180 --case ti2v --steps 3
      run mi2v 180 --case mi2v --steps 3;;
    a14b)
      run i2v-A14B 300 --case i2v-A14B --steps 2;;
    budget)
      run ti2v-budget11 180 --case ti2v --steps 3 --budget 11
      run ti2v-budget20 180 --case ti2v --steps 3 --budget 20;;
    quant)
      echo "== quant_modes"
      timeout 280 $py -m benchmarks.quant_modes --size "$size" --out "$out/quant_modes_${size}.json" 2>&1 | tail -n 12;;
    blockwise)
      for mode in bf16 qmm-affine4 dequant-affine4 dequant-affine8 dequant-mxfp8 dequant-mxfp4 stream-2 stream-1 stream-2-affine8; do
        echo "== blockwise $mode"
        timeout 90 $py -m benchmarks.blockwise --size "$size" --modes "$mode" --out "$out/blockwise_${mode}_${size}.json" 2>&1 | tail -n 3
      done
      echo "== blockwise crossover"
      small=""; [ "$size" = full ] || small="--rows 16,128 --shapes 256x256"
      timeout 120 $py -m benchmarks.blockwise --crossover $small --out "$out/blockwise_crossover_${size}.json" 2>&1 | tail -n 26;;
    *) echo "unknown: $what"; exit 2;;
  esac
done
