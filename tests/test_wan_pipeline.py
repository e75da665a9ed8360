"""Wan2.2 TI2V-5B pipeline: mi2v with one image equals the official TI2V image-to-video loop; N anchors
stay anchored with timestep 0; converter from the official layout (the tiny checkpoint in assets/)."""

import math

import mlx.core as mx
import numpy as np
import pytest
import torch
from PIL import Image

from mlx_video.io.weights import WeightsError
from mlx_video.wan import denoise as D
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from tests import oracles
from tests.helpers import IMAGES
from tests.oracles import rel_err
from tests.wan_tiny import TINY, DiTSpy, contexts, load_official, official_vae22_scale, tiny_pipeline

STEPS, G, SHIFT, FRAMES = 3, 5.0, 5.0, 9


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory)


def _contexts(text_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(7, text_dim, generator=g), torch.randn(11, text_dim, generator=g)]


def _official_i2v(dit, vae, img_path, contexts, noise, max_area):
    """The body of wan/textimage2video.py WanTI2V.i2v, run on the reference modules (float32, CPU)."""
    wu = oracles.wan_utils()
    img = Image.open(img_path).convert("RGB")
    ih, iw = img.height, img.width
    ow, oh = wu.best_output_size(iw, ih, 32, 32, max_area)
    scale = max(ow / iw, oh / ih)
    img = img.resize((round(iw * scale), round(ih * scale)), Image.LANCZOS)
    x1, y1 = (img.width - ow) // 2, (img.height - oh) // 2
    img = img.crop((x1, y1, x1 + ow, y1 + oh))
    img = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).sub(0.5).div(0.5)[:, None]
    vscale = official_vae22_scale()
    with torch.no_grad():
        z = vae.encode(img[None], vscale).float()[0]
        sched = oracles.wan_scheduler("unipc", STEPS, SHIFT)
        latent = noise.clone()
        _, mask2 = wu.masks_like([noise], zero=True)
        latent = (1.0 - mask2[0]) * z + mask2[0] * latent
        seq_len = math.prod(noise.shape[1:]) // 4
        for t in sched.timesteps:
            ts = torch.stack([t])
            tt = (mask2[0][0][:, ::2, ::2] * ts).flatten()
            tt = torch.cat([tt, tt.new_ones(seq_len - tt.size(0)) * ts])[None]
            vc = dit([latent], t=tt, context=[contexts[0]], seq_len=seq_len)[0]
            vu = dit([latent], t=tt, context=[contexts[1]], seq_len=seq_len)[0]
            v = vu + G * (vc - vu)
            latent = sched.step(v[None], t, latent[None], return_dict=False)[0][0]
            latent = (1.0 - mask2[0]) * z + mask2[0] * latent
        video = vae.decode(latent[None], vscale).float().clamp_(-1, 1)[0]
    return z, latent, video, (ow, oh)


def test_mi2v_one_image_equals_official_ti2v(pipe):
    dit, vae = load_official(TINY)
    ctx = _contexts(dit.text_dim)
    img = IMAGES / "chelsea.png"
    max_area = 96 * 64
    iw, ih = Image.open(img).size
    ow, oh = oracles.wan_utils().best_output_size(iw, ih, 32, 32, max_area)
    T = (FRAMES - 1) // 4 + 1
    noise = torch.randn(48, T, oh // 16, ow // 16, generator=torch.Generator().manual_seed(1))
    z_ref, lat_ref, vid_ref, (ow, oh) = _official_i2v(dit, vae, img, ctx, noise, max_area)

    run = dict(
        task="mi2v-5B",
        size="96*64",
        frame_num=FRAMES,
        sample_steps=STEPS,
        sample_shift=SHIFT,
        noise=mx.array(noise.permute(1, 2, 3, 0).numpy())[None],
        context=[mx.array(c.numpy()) for c in ctx],
    )
    res = pipe.generate(images=[img], guide_scale=G, solver="unipc", batch_cfg=True, **run)
    lat = res.latents[0]  # [T, h, w, C]
    ref = lat_ref.permute(1, 2, 3, 0)
    assert rel_err(lat, ref) < 1e-3, rel_err(lat, ref)
    assert res.frames.shape == (FRAMES, oh, ow, 3)
    ref_u8 = np.round((vid_ref.permute(1, 2, 3, 0).numpy() + 1) * 127.5).astype(np.int16)
    assert np.abs(res.frames.astype(np.int16) - ref_u8).max() <= 1
    # the comparison can fail: unbatched CFG agrees, a different guide scale or image does not
    res2 = pipe.generate(images=[img], guide_scale=G, batch_cfg=False, **run)
    assert rel_err(res2.latents[0], ref) < 1e-3
    bad = pipe.generate(images=[IMAGES / "coffee.png"], guide_scale=G, **run)
    assert rel_err(bad.latents[0], ref) > 1e-2
    bad = pipe.generate(images=[img], guide_scale=1.0, **run)
    assert rel_err(bad.latents[0], ref) > 1e-2


def test_mi2v_three_anchors_stay_clean_with_timestep_zero(pipe):
    paths = [IMAGES / n for n in ("astronaut.png", "coffee.png", "rocket.png")]
    W, H, T = 64, 64, 5
    imgs = P.prepare_images(paths, W, H)
    Z = P.encode_anchor_images(pipe.vae, imgs)
    assert Z.shape == (1, 3, H // 16, W // 16, 48)
    # each image encoded on its own: equal to a lone encode
    np.testing.assert_allclose(
        np.array(Z[:, 1:2]), np.array(pipe.vae.encode(mx.array(imgs[1])[None, None])), rtol=1e-5, atol=1e-5
    )
    from mlx_video.conditioning import LatentAnchor, anchor_arrays, blend_clean
    from mlx_video.sampling.solvers import make_solver

    shape = (1, T, H // 16, W // 16, 48)
    mask, clean = anchor_arrays([LatentAnchor(Z, 0)], shape)
    spy = DiTSpy(pipe.dit)
    ctx = pipe.dit.embed_text(contexts(32))
    latent = blend_clean(mx.random.normal(shape, key=mx.random.key(2)), mask, clean)
    solver = make_solver("unipc", 4, 5.0)
    out = D.denoise(spy, latent, solver, ctx, spy.rope_tables((T, H // 32, W // 32)), 5.0, mask, clean)
    assert len(spy.calls) == 4
    for (x, t), ts in zip(spy.calls, solver.timesteps):
        np.testing.assert_array_equal(x[:, :3], np.array(Z).repeat(x.shape[0], 0))
        assert (t[:, :3] == 0).all() and (t[:, 3:] == ts).all()
        assert not np.allclose(x[:, 3:], 0)
    np.testing.assert_array_equal(np.array(out[:, :3]), np.array(Z))


def test_size_frame_and_image_count_errors(pipe, tmp_path):
    img = IMAGES / "astronaut.png"
    with pytest.raises(ValueError, match="4k\\+1"):
        pipe.generate(task="mi2v-5B", images=[img], frame_num=8, size="64*64")
    with pytest.raises(ValueError, match="at most 2 images"):
        pipe.generate(task="mi2v-5B", images=[img] * 3, frame_num=9, size="64*64")
    with pytest.raises(ValueError, match="multiples of 32"):
        pipe.generate(task="t2v-5B", frame_num=5, size="100*64", context=[mx.zeros((2, 32))] * 2)


def test_truncated_checkpoint_is_an_error(tmp_path):
    import shutil

    src = tmp_path / "ckpt"
    shutil.copytree(TINY, src)
    p = src / "Wan2.2_VAE.pth"
    p.write_bytes(p.read_bytes()[:-5000])
    with pytest.raises(WeightsError, match="Wan2.2_VAE.pth"):
        convert_wan(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
