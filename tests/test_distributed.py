"""Sequence parallelism (mlx_video/distributed.py): two local CPU ranks (ring backend on 127.0.0.1,
started by ``mlx.launch``) give the one-process values, bit for bit, on every rank: the Wan TI2V DiT
(Ulysses and all-gather K/V; shards on and off frame borders, a padded last shard), the LTX-2 and
LTX-2.3 audio+video transformers (video split, audio whole), and a 2-step ti2v-5B pipeline run of
the tiny checkpoint with its T5 on rank 0 only. A world of one equals the plain path."""

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.distributed import SequenceParallel, active, all_to_all, broadcast, current
from mlx_video.wan import vae22
from mlx_video.wan.checkpoint import convert_wan
from mlx_video.wan.t5 import UMT5Args
from tests import dist_cases as C
from tests.helpers import ASSETS, ROOT
from tests.test_memory import TI2V_5B
from tests.wan_tiny import TINY, run_cli

RANKS = 2


def _free_ports(n: int) -> int:
    """A port p with p..p+n-1 free on 127.0.0.1 (mlx.launch's ring backend listens on consecutive ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        try:
            socks = []
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p + i))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_wan(TINY, tmp_path_factory.mktemp("conv") / "tiny", dtype="float32")


@pytest.fixture(scope="module")
def single(converted):
    """Every case in this process, no parallelism."""
    return C.run_all(lambda mode: None, converted)


@pytest.fixture(scope="module")
def ranks(converted, tmp_path_factory):
    """Every case on each of 2 ranks launched by ``mlx.launch --backend ring`` on 127.0.0.1."""
    out = tmp_path_factory.mktemp("ranks")
    r = _launch(["-m", "tests.dist_cases", str(out), str(converted)])
    files = [out / f"rank{i}.npz" for i in range(RANKS)]
    # mlx.launch exits 0 even when a rank fails: the files are the proof
    assert r.returncode == 0 and all(f.exists() for f in files), r.stdout[-3000:] + r.stderr[-3000:]
    return [dict(np.load(f)) for f in files]


def _launch(args: list, timeout: int = 120) -> subprocess.CompletedProcess:
    """``mlx.launch --backend ring --hosts 127.0.0.1 -n 2 -- python ARGS`` from the repository root."""
    launch = [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()"]
    ring = ["--backend", "ring", "--hosts", "127.0.0.1", "-n", str(RANKS), "-p", str(_free_ports(RANKS))]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*launch, *ring, "--", sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_two_ranks_equal_one_process(single, ranks):
    """Exact equality (0 ulp) of every output on both ranks; the tiny models run float32 on CPU."""
    bad = []
    for i, got in enumerate(dict(r) for r in ranks):
        assert int(got.pop("size")) == RANKS
        got.pop("dit_peak")
        assert set(got) == set(single)
        assert int(got.pop("text_encoder_calls")) == (1 if i == 0 else 0), i  # rank 0 encodes, alone
        for k in sorted(got):
            want = single[k]
            assert got[k].shape == want.shape, (i, k)
            if not np.array_equal(got[k], want):
                bad.append(f"rank {i} {k}: max |diff| {np.abs(got[k].astype(np.float64) - want).max():.3g}")
    assert not bad, "; ".join(bad)


def test_memory_plan_per_rank(ranks):
    """The planner's per-rank DiT activation estimate (mlx_video.memory, ``ranks=2``) against MLX's peak
    measured on each of the 2 ranks (within 25%, as the one-process estimate in tests/test_memory.py),
    and the plan's phases per rank."""
    from mlx_video import memory as M
    from mlx_video.wan.transformer import WanModelArgs

    a = WanModelArgs(**C.MEM_DIT)
    T, h, w = C.MEM_GRID
    L = T * (h // 2) * (w // 2)
    est = M.dit_activation_bytes(a, L, 1, "float32", "cpu", ranks=RANKS)
    for got in ranks:
        assert abs(est / float(got["dit_peak"]) - 1) < 0.25, (est, float(got["dit_peak"]))
    one = M.dit_activation_bytes(a, L, 1, "float32", "cpu")
    assert 0.5 * one < est < one
    sizes = M.WanSizes(dit=TI2V_5B, vae=vae22.Wan22VAEArgs(), t5=UMT5Args(), images=1)
    p1, p4 = (M.plan(sizes, 121, 704, 1280, budget=200 * M.GIB, backend_name="metal", ranks=n) for n in (1, 4))
    assert p4.ranks == 4 and p4.phases_gib["text"] == p1.phases_gib["text"]  # T5 on rank 0, whole
    assert p4.phases_gib["denoise"] < p1.phases_gib["denoise"] and p4.to_dict()["ranks"] == 4
    tiled = dict(vae_tile=(256, 256), vae_overlap=64)
    d1, d4 = (M.phase_peaks(sizes, 121, 704, 1280, M.MemoryPlan(ranks=n, **tiled), "metal")["decode"] for n in (1, 4))
    # one rank decodes tile by tile to uint8 (no float32 pixels); over 4 ranks: the float32 video, a tile and 4 gathered
    assert d4 - d1 == 121 * 704 * 1280 * 3 * 4 + 5 * 121 * 256 * 256 * 3 * 4


def test_world_of_one_is_the_plain_path(converted, single):
    """mx.distributed.init() without a launch: a group of one through the shard/gather/all-to-all code."""
    group = mx.distributed.init()
    assert group.size() == 1
    dit = C.P.WanPipeline(converted, dtype=mx.float32, offload=False).dit
    for name, grid in C.WAN_GRIDS.items():
        for mode in ("ulysses", "allgather"):
            got = C.wan_forward(dit, grid, SequenceParallel(group, mode))
            assert np.array_equal(np.array(got), single[f"wan_{name}_{mode}"]), (name, mode)
    m = C.ltx_model("ltx23")
    v, a = C.ltx_forward(m, SequenceParallel(group, "ulysses"))
    assert np.array_equal(np.array(v), single["ltx23_video_ulysses"])
    assert np.array_equal(np.array(a), single["ltx23_audio_ulysses"])


def test_active_context_is_the_default_sp(converted, single):
    """``distributed.active(sp)`` (how the LTX CLI reaches the transformer inside its pipelines)."""
    sp = SequenceParallel(mx.distributed.init(), "allgather")
    m = C.ltx_model("ltx2")
    with active(sp):
        assert current() is sp
        v, _ = C.ltx_forward(m, None)
    assert current() is None
    assert np.array_equal(np.array(v), single["ltx2_video_allgather"])


@pytest.mark.parametrize("family", ["wan", "ltx2"])
def test_cli_ulysses_size_must_match_the_world(family, tmp_path):
    """Without mlx.launch the world is one rank: --ulysses_size 2 is one clear error line, nothing written."""
    from typer.testing import CliRunner

    from mlx_video.cli import _expand_multi, app

    out = tmp_path / "o.mp4"
    if family == "wan":
        r = run_cli("--prompt", "x", "--ulysses_size", 2, "--save_file", out, task="ti2v-5B", ckpt_dir=tmp_path)
    else:
        args = ["generate", "--model", str(tmp_path), "--pipeline", "dev", "--prompt", "x", "--ulysses-size", "2"]
        r = CliRunner().invoke(app, _expand_multi([*args, "-o", str(out)]))
    assert r.exit_code == 2 and "needs 2 ranks started by mlx.launch; this world has 1" in r.output, r.output
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--dit_fsdp", "--t5_fsdp"])
def test_cli_fsdp_flags_need_a_launch(flag, tmp_path):
    """As the official generate.py: the FSDP flags in a world of one are one clear error line."""
    out = tmp_path / "o.mp4"
    r = run_cli("--prompt", "x", flag, "--save_file", out, task="ti2v-5B", ckpt_dir=tmp_path)
    assert r.exit_code == 2 and f"{flag} is for several ranks; this world has 1" in r.output, r.output
    assert not out.exists()


class _Rank1:
    """A stand-in group: this process as rank 1 of 2 (collectives patched out by the test)."""

    def rank(self):
        return 1

    def size(self):
        return 2


@pytest.fixture
def rank1(monkeypatch):
    """The CLIs as rank 1 of a 2-rank launch: mlx_video.distributed.init returns a SequenceParallel on
    :class:`_Rank1`, rank 0's seed and text embeddings arrive as stand-ins."""
    import mlx_video.distributed as D

    sp = SequenceParallel(_Rank1())
    monkeypatch.setattr(D, "init", lambda size, *a, **k: sp if size == 2 else None)
    monkeypatch.setattr(SequenceParallel, "same", lambda self, v: 1234)
    monkeypatch.setattr(D, "broadcast", lambda arrays, group, root=0: [mx.zeros((1, 4, 32))] * 4)
    return sp


def test_wan_cli_wiring_on_a_non_root_rank(rank1, converted, tmp_path, monkeypatch):
    """--ulysses_size 2 on rank 1: the pipeline gets the group and rank 0's seed; nothing printed or written."""

    from mlx_video.wan import pipeline as WP

    seen = {}

    class Pipe:
        def __init__(self, folder, **kw):
            seen["group"] = kw.get("group")

        def check_task(self, task):
            pass

        def plan(self, settings):  # the memory plan's inputs (no model)
            return SimpleNamespace(shape=(1, 2, 2, 4, 48), height=32, width=64)

        def fit_memory(self, plan, budget=None, **fixed):
            from mlx_video.memory import MemoryPlan

            return MemoryPlan(**fixed)

        def generate(self, settings, progress=None):
            seen["seed"] = settings.seed
            return object()

    monkeypatch.setattr(WP, "WanPipeline", Pipe)
    out = tmp_path / "o.mp4"
    r = run_cli(
        *("--prompt", "x", "--size", "64*32", "--frame_num", 5),
        *("--ulysses_size", 2, "--dit_fsdp", "--t5_fsdp", "--save_file", out),
        task="ti2v-5B",
        ckpt_dir=converted,
    )
    assert r.exit_code == 0, r.output
    assert seen == {"group": rank1.group, "seed": 1234}
    assert not out.exists() and r.output.strip() == ""


def test_ltx2_cli_wiring_on_a_non_root_rank(rank1, tmp_path, monkeypatch):
    """--ulysses-size 2 on rank 1: Gemma is not run here (rank 0's embeddings are used), the pipeline
    runs with the group active, nothing printed or written."""
    from typer.testing import CliRunner

    import mlx_video.cli.ltx2 as L
    from mlx_video.cli import _expand_multi, app
    from mlx_video.ltx2 import pipelines as LP

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    seen = {}
    monkeypatch.setattr(L, "encode_text", lambda *a: seen.setdefault("encoded", True))
    monkeypatch.setattr(L, "load_components", lambda *a: None)

    def generate(comps, settings, pos, neg, images, **kw):
        seen.update(sp=current(), seed=settings.seed, neg=neg is not None)
        return object()

    monkeypatch.setattr(LP, "generate", generate)
    out = tmp_path / "o.mp4"
    src = ASSETS / "tiny-LTX-2" / "ltx-2-tiny-dev.safetensors"
    r = CliRunner().invoke(
        app,
        _expand_multi(
            [
                "generate",
                "--model",
                str(src),
                "--pipeline",
                "dev",
                "--steps",
                "2",
                "--prompt",
                "x",
                "-H",
                "64",
                "-W",
                "64",
                "--num-frames",
                "9",
                "--ulysses-size",
                "2",
                "-o",
                str(out),
            ]
        ),
    )
    assert r.exit_code == 0, r.output
    assert seen == {"sp": rank1, "seed": 1234, "neg": True}
    assert not out.exists() and r.output.strip() == ""


def test_helpers_and_errors():
    group = mx.distributed.init()
    sp = SequenceParallel(group)
    x = mx.arange(24).reshape(2, 3, 4)
    assert np.array_equal(np.array(all_to_all(sp, x, 1, 2)), np.array(x))
    sh = sp.split(3)
    assert np.array_equal(np.array(sh.gather(sh.take(x))), np.array(x))
    assert [np.array(b).tolist() for b in broadcast([x, mx.array([True])], group)] == [np.array(x).tolist(), [True]]
    with pytest.raises(ValueError, match="mode must be one of"):
        SequenceParallel(group, "tensor")
    with pytest.raises(ValueError, match="has 4 rows"):
        sp.split(5).take(x, axis=2)


def test_mlx_launch_cli_two_ranks(converted, tmp_path, monkeypatch):
    """``mlx.launch -n 2 -- mlx_video generate ... --ulysses_size 2`` through the real CLI: the tiny
    ti2v-5B folder, real T5 (rank 0 only), DiT split by tokens, VAE decode split by tiles. One progress
    report and one output file (rank 0's), whose frames equal a one-process run's byte for byte."""
    from typer.testing import CliRunner

    from mlx_video.cli import _expand_multi, app
    from tests.test_cli_wan import frames_of

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    args = ["generate", "--task", "ti2v-5B", "--ckpt_dir", str(converted), "--dtype", "float32"]
    args += ["--prompt", "a cat on the moon", "--size", "96*64", "--frame_num", "9", "--sample_steps", "2"]
    args += ["--base_seed", "7", "--vae_tile", "32"]
    (tmp_path / "ranks").mkdir()
    dist = tmp_path / "ranks" / "dist.mp4"
    cli = ["-c", "from mlx_video.cli import main; main()"]
    r = _launch([*cli, *args, "--ulysses_size", "2", "--dit_fsdp", "--t5_fsdp", "--save_file", str(dist)])
    log = r.stdout + r.stderr
    assert dist.exists(), log[-3000:]
    assert sorted(p.name for p in dist.parent.iterdir()) == ["dist.mp4"]  # no second file, no temp left
    assert log.count("saved ") == 1 and log.count("denoise: started") == 1, log[-3000:]  # rank 1 prints nothing
    one = tmp_path / "one.mp4"
    res = CliRunner().invoke(app, _expand_multi([*args, "--save_file", str(one)]))
    assert res.exit_code == 0, res.output
    got, want = frames_of(dist), frames_of(one)
    np.testing.assert_array_equal(got[0], want[0])
    assert '"ranks": 2' in got[-1]["comment"] and '"ranks": 2' not in want[-1]["comment"]
    assert '"vae_tiling": {"overlap": [16, 16], "tile": [32, 32]}' in got[-1]["comment"]


def _streams(path) -> tuple[np.ndarray, np.ndarray, str]:
    """(video frames uint8, audio samples, metadata comment) of an mp4."""
    import av

    with av.open(str(path)) as c:
        video = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=-1)
        return video, audio, c.metadata.get("comment", "")


def test_mlx_launch_ltx2_cli_two_ranks(tmp_path, monkeypatch):
    """The same for LTX-2: ``mlx.launch -n 2 -- mlx_video generate --model ... --ulysses-size 2`` on the tiny
    LTX-2 (dev pipeline: CFG, STG and modality guidance, audio), Gemma on rank 0 only; one output file whose
    video and audio equal a one-process run's."""
    from typer.testing import CliRunner

    from mlx_video.cli import _expand_multi, app
    from mlx_video.ltx2 import loading
    from mlx_video.ltx2.checkpoint import convert_ltx2

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    parts = loading.find_parts(ASSETS / "tiny-LTX-2", "dev")
    model = convert_ltx2(parts["checkpoint"], tmp_path / "tiny", dtype="float32", gemma=parts["gemma"])
    args = ["generate", "--model", str(model), "--pipeline", "dev", "--steps", "2", "--stg-blocks", "1"]
    args += ["--prompt", "a cat", "-H", "64", "-W", "64", "--num-frames", "9", "--seed", "3"]
    (tmp_path / "ranks").mkdir()
    dist = tmp_path / "ranks" / "dist.mp4"
    r = _launch(["-c", "from mlx_video.cli import main; main()", *args, "--ulysses-size", "2", "-o", str(dist)])
    log = r.stdout + r.stderr
    assert dist.exists(), log[-3000:]
    assert sorted(p.name for p in dist.parent.iterdir()) == ["dist.mp4"]
    assert log.count("saved ") == 1 and log.count("text encode:") == 1, log[-3000:]
    one = tmp_path / "one.mp4"
    res = CliRunner().invoke(app, _expand_multi([*args, "-o", str(one)]))
    assert res.exit_code == 0, res.output
    (gv, ga, _), (wv, wa, _) = _streams(dist), _streams(one)
    np.testing.assert_array_equal(gv, wv)
    np.testing.assert_array_equal(ga, wa)
