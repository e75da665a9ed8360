#!/usr/bin/env bash
# The whole-run GPU measurements of issue 11 (see benchmarks/README.md). One target per 10-minute device call;
# each target's timeouts add up to under 9 minutes. Durations below are estimates for a warm H100 (MLX's first
# run on a fresh machine compiles its kernels: add up to ~30 s to the first MLX run of a call).
#   bash benchmarks/gpu_issue11.sh 5b        # TI2V-5B 121x704x1280: t2v, ti2v, mi2v (3 images), 3 steps    ~5 min
#   bash benchmarks/gpu_issue11.sh a14b      # i2v-A14B 81x480x832, 2 steps (one expert each)                  ~2 min
#   bash benchmarks/gpu_issue11.sh quant     # quant_modes --size full                                          ~3 min
#   bash benchmarks/gpu_issue11.sh budget    # ti2v: a 16 GB Mac's plan (--budget 10.7 --plan-for metal: DiT blocks
#                                            # streamed from a written file, UMT5 8-bit at load, 512 px tiles)
#                                            # and the H100's own plan for 11 GiB (4-bit at load, 512 px)   ~6-8 min
#   bash benchmarks/gpu_issue11.sh budget20  # ti2v with --budget 20                                          ~2 min
#   bash benchmarks/gpu_issue11.sh official  # official WanTI2V.generate vs ours, ti2v + t2v, 3 steps, generate.py's
#                                            # one-GPU defaults (offload_model=True)                          ~4-6 min
#   bash benchmarks/gpu_issue11.sh official-resident  # the same, ti2v, everything resident (no offload)     ~2-3 min
#   bash benchmarks/gpu_issue11.sh vae       # Wan2.2 VAE 121x704x1280: ours bf16 untiled + tiles 256/384/512:192,
#                                            # then the official decode in bf16 autocast and in float32        ~3-4 min
#   bash benchmarks/gpu_issue11.sh vae-lean  # Wan2.2 VAE: one chunk layer by layer at 704x1280 (wan_vae_layers), then
#                                            # 121x704x1280 untiled, fpc 4/1, f32/u8, eval-block default/off  ~4-5 min
#   bash benchmarks/gpu_issue11.sh vae-stream  # Wan2.2 VAE 121x704x1280 bf16, uint8 out: untiled, and tiled tile by tile
#                                            # (704x672:64, 704x704:128, 512:128) at fpc 1 and 4; official bf16  ~6-8 min
#   bash benchmarks/gpu_issue11.sh ltx       # LTX-2 and LTX-2.3 DISTILLED 768x512x121 + audio, 48 blocks       ~5-6 min
#   bash benchmarks/gpu_issue11.sh ltx-release  # LTX-2 DISTILLED 768x512x121 + audio, ours with --release (transformer
#                                            # dropped before the decode, as the CLI and ltx-pipelines)        ~4-6 min
#   bash benchmarks/gpu_issue11.sh ltx-hd    # the same at 1280x704x121                                         ~6-8 min
#   bash benchmarks/gpu_issue11.sh ltx-dev   # LTX-2 and LTX-2.3 DEV_TWO_STAGE 768x512x121, stage 1 10 steps (projected
#                                            # to the official 40 / 30), 48 blocks                              ~5-7 min
#   bash benchmarks/gpu_issue11.sh ltx-stream  # LTX-2 DISTILLED 768x512x121 + audio, MLX only: 8-bit transformer with
#                                            # blocks streamed (2 resident), then 8-bit resident (target <= 20 GiB) ~6-8 min
#   bash benchmarks/gpu_issue11.sh ltx-dev-batched  # ltx-dev's MLX side with the 4 guidance passes in one batch-4 call
#                                            # (--guidance-batch 4; the official side is ltx-dev's)          ~3-4 min
#   bash benchmarks/gpu_issue11.sh ltx23-passes  # LTX-2.3 transformer at the stage-1 size (121x256x384, 1536 video
#                                            # tokens), 48 blocks: cond / STG / isolated forward, one guided step
#                                            # (4 passes) at guidance batch 1 and 4, official vs ours          ~5-7 min
#   bash benchmarks/gpu_issue11.sh ltx2-passes   # the same for LTX-2                                         ~5-7 min
#   bash benchmarks/gpu_issue11.sh ltx-vae   # LTX-2 and LTX-2.3 tiled video decode 121x512x768: ltx-core vs our
#                                            # conv3d formulations / chunking / async tile eval (one table each) ~4-5 min
#   bash benchmarks/gpu_issue11.sh first-run # LTX-2 DISTILLED MLX only, twice: fresh PTX cache, then warm (first-run
#                                            # overhead without / with MLX's kernel disk cache)               ~4-5 min
#   bash benchmarks/gpu_issue11.sh cases     # Wan2.1 I2V-14B 81x480x832 and the A14B pair at 81x720x1280, 2 steps ~4-6 min
#   bash benchmarks/gpu_issue11.sh blockwise  # benchmarks.blockwise: one process per mode (90 s each) + crossover
# The LTX targets need mlx-lm (Gemma 3), which the device kit does not install: copy it into an ignored folder
# here (`mkdir -p .device-kit/extra && cp -r .venv/lib/python3.*/site-packages/mlx_lm .device-kit/extra/`), add
# ".device-kit/extra" to the call's carry and `$PWD/.device-kit/extra` to PYTHONPATH there.
# SIZE=tiny runs the same at tiny size (CPU smoke test). JSON per run under $OUT (default /tmp/gpu_issue11).
# Every e2e run is bf16 DiT/text, bf16 VAE, sequential CFG. When the tokenizer's packages are missing
# (tokenizers, ftfy, regex), the text contexts are injected (--inject-context) and the JSON says so.
set -u
size=${SIZE:-full}
out=${OUT:-/tmp/gpu_issue11}
mkdir -p "$out"
py=${PYTHON:-python3}
ctx=""
$py -c "import tokenizers, ftfy, regex" 2>/dev/null || { ctx="--inject-context"; echo "no tokenizer packages: injected contexts"; }
common="--size $size --vae-dtype bfloat16 --sequential-cfg $ctx"
full() { [ "$size" = full ]; }
run() {  # name, seconds, args...   (benchmarks.e2e)
  local name=$1 secs=$2; shift 2
  echo "== $name: $*"
  timeout "$secs" $py -m benchmarks.e2e $common "$@" --out "$out/e2e_${name}_${size}.json" 2>&1 | tail -n 14
}
cases() {  # name, seconds, args...   (benchmarks.e2e_cases: the extra cases)
  local name=$1 secs=$2; shift 2
  echo "== $name: $*"
  timeout "$secs" $py -m benchmarks.e2e_cases $common "$@" --out "$out/e2e_${name}_${size}.json" 2>&1 | tail -n 14
}
bench() {  # name, seconds, module, args...   (any benchmark module; its table is the tail of its output)
  local name=$1 secs=$2 mod=$3; shift 3
  echo "== $name: $mod $*"
  timeout "$secs" $py -m "benchmarks.$mod" "$@" 2>&1 | tail -n 24
}
for what in "$@"; do
  case $what in
    5b)
      run t2v 200 --case t2v --steps 3
      run ti2v 180 --case ti2v --steps 3
      run mi2v 180 --case mi2v --steps 3;;
    a14b)
      run i2v-A14B 300 --case i2v-A14B --steps 2;;
    budget)  # the weights files (DiT ~10 GiB, UMT5 ~10.6 GiB bf16) are written first, outside every phase
      run ti2v-mac16 260 --case ti2v --steps 3 --budget 10.7 --plan-for metal
      run ti2v-budget11 260 --case ti2v --steps 3 --budget 11;;
    budget20)
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
    official)
      bench official-ti2v 280 wan_e2e_official --size "$size" --case ti2v --steps 3 --mlx-warmup $ctx \
        --out "$out/e2e_official_ti2v_${size}.json"
      bench official-t2v 240 wan_e2e_official --size "$size" --case t2v --steps 3 $ctx \
        --out "$out/e2e_official_t2v_${size}.json";;
    official-resident)
      bench official-ti2v-resident 300 wan_e2e_official --size "$size" --case ti2v --steps 3 --mlx-warmup $ctx \
        --official-offload false --out "$out/e2e_official_ti2v_resident_${size}.json";;
    vae)
      tiles=""; full && tiles="--tiles 256,384,512:192"
      bench vae-tiling 300 wan_vae_tiling --size "$size" --dtypes bfloat16 $tiles --out "$out/vae_tiling_${size}.json"
      bench vae-official-bf16 110 wan_vae --size "$size" --skip-mlx --dtype bf16 --repeat 2
      bench vae-official-fp32 110 wan_vae --size "$size" --skip-mlx --dtype fp32 --repeat 1;;
    vae-lean)
      bench vae-layers 120 wan_vae_layers --size "$size" --out "$out/vae_layers_${size}.json"
      lean="--tiles none --frames-per-chunk 4,1 --pixels f32,u8 --eval-block default,off"
      full || lean="$lean --video 5x64x96"
      bench vae-lean 360 wan_vae_tiling --size "$size" --dtypes bfloat16 $lean --out "$out/vae_lean_${size}.json";;
    vae-stream)  # tiled decodes tile by tile to uint8 (tiled_frames) against untiled uint8, then the official bf16
      tiles="none,704x672:64,704x704:128,512:128"; full || tiles="none,64x48:16"
      bench vae-stream 420 wan_vae_tiling --size "$size" --dtypes bfloat16 --tiles "$tiles" --frames-per-chunk 1,4 \
        --pixels u8 --out "$out/vae_stream_${size}.json"
      bench vae-official-bf16 110 wan_vae --size "$size" --skip-mlx --dtype bf16 --repeat 2;;
    vae-fp32)  # ours in float32 (the default VAE dtype), same tiles                                       ~4-5 min
      tiles=""; full && tiles="--tiles 256,384,512:192"
      bench vae-tiling-fp32 500 wan_vae_tiling --size "$size" --dtypes float32 $tiles --out "$out/vae_tiling_fp32_${size}.json";;
    ltx)
      bench ltx2-distilled 250 ltx2_distilled --size "$size" --model ltx2 --repeat 1
      bench ltx23-distilled 250 ltx2_distilled --size "$size" --model ltx23 --repeat 1;;
    ltx-release)  # LTX-2 DISTILLED with ours dropping its transformer before the decode (the CLI's run)
      bench ltx2-distilled-release 400 ltx2_distilled --size "$size" --model ltx2 --release \
        --out "$out/ltx2_distilled_release_${size}.json";;
    ltx-hd)
      hd=""; full && hd="--video 121x704x1280"
      bench ltx2-distilled-hd 260 ltx2_distilled --size "$size" --model ltx2 --repeat 1 $hd
      bench ltx23-distilled-hd 260 ltx2_distilled --size "$size" --model ltx23 --repeat 1 $hd;;
    ltx-dev-batched)
      bench ltx2-dev-two-stage-gb4 200 ltx2_distilled --size "$size" --model ltx2 --pipeline dev-two-stage --steps 10 \
        --repeat 1 --guidance-batch 4 --skip-reference
      bench ltx23-dev-two-stage-gb4 200 ltx2_distilled --size "$size" --model ltx23 --pipeline dev-two-stage --steps 10 \
        --repeat 1 --guidance-batch 4 --skip-reference;;
    ltx2-passes|ltx23-passes)
      m=${what%-passes}; v=""; full && v="--video 121x256x384"
      for ps in cond stg isolated step; do
        bench "$m-pass-$ps" 90 ltx2_transformer --size "$size" --model "$m" $v --pass $ps --repeat 3
      done
      bench "$m-pass-step-gb4" 70 ltx2_transformer --size "$size" --model "$m" $v --pass step --guidance-batch 4 \
        --repeat 3 --skip-reference;;
    ltx-vae)
      for m in ${MODELS:-ltx2 ltx23}; do  # MODELS=ltx2 fits one 10-minute call with the default variants
        bench "$m-vae-decode" ${VAE_SECS:-240} ltx2_vae_decode --size "$size" --model "$m" --repeat ${REPEAT:-3}
      done;;
    first-run)  # LTX-2 DISTILLED, MLX only, two processes: a fresh PTX cache, then the same (warm) cache
      for pass in cold-ptx warm-ptx; do
        MLX_PTX_CACHE_DIR="$out/ptx_first_run" bench "ltx2-first-run-$pass" 280 ltx2_distilled --size "$size" \
          --model ltx2 --skip-reference --repeat 1 --out "$out/ltx2_first_run_${pass}_${size}.json"
      done;;
    ltx-dev)
      bench ltx2-dev-two-stage 260 ltx2_distilled --size "$size" --model ltx2 --pipeline dev-two-stage --steps 10 --repeat 1
      bench ltx23-dev-two-stage 260 ltx2_distilled --size "$size" --model ltx23 --pipeline dev-two-stage --steps 10 --repeat 1;;
    ltx-stream)  # the random transformer file is written under $TMPDIR first (~20 GiB at 8-bit, full size)
      bench ltx2-distilled-q8-stream2 300 ltx2_distilled --size "$size" --model ltx2 --skip-reference --warmup 0 \
        --repeat 1 --quantize 8 --stream-blocks 2 --out "$out/ltx2_distilled_q8_stream2_${size}.json"
      bench ltx2-distilled-q8 240 ltx2_distilled --size "$size" --model ltx2 --skip-reference --warmup 0 \
        --repeat 1 --quantize 8 --out "$out/ltx2_distilled_q8_${size}.json";;
    cases)
      cases i2v-14B 220 --case i2v-14B --steps 2
      cases i2v-A14B-720p 300 --case i2v-A14B-720p --steps 2;;
    *) echo "unknown: $what"; exit 2;;
  esac
done
