"""Parity of the Wan flow solvers with the official schedulers (wan.utils.fm_solvers*)."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.sampling import FlowDPMSolver, FlowUniPC, euler_step, make_solver, shift_sigmas
from mlx_video.sampling.schedules import wan_flow_schedule, wan_unipc_schedule
from tests.oracles import rel_err, wan_scheduler

SHAPE = (1, 2, 4, 6, 16)  # a small channels-last latent [B, T, h, w, C]; the solvers are elementwise
TOL = 1e-5


def drive(solver, ref, seed: int = 0) -> list[float]:
    """Feed both the same seeded 'model outputs'; rel_err of x after every step."""
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(SHAPE).astype(np.float32)
    x, xt = mx.array(x_np), torch.from_numpy(x_np)
    errs = []
    solver.reset()
    for i, t in enumerate(ref.timesteps):
        v = rng.standard_normal(SHAPE).astype(np.float32)
        x = solver.step(mx.array(v), i, x)
        xt = ref.step(torch.from_numpy(v), t, xt, return_dict=False)[0]
        errs.append(rel_err(x, xt))
    return errs


CASES = [
    ("unipc", 50, 5.0),
    ("unipc", 4, 5.0),
    ("dpm++", 50, 5.0),
    ("dpm++", 4, 5.0),
    ("euler", 40, 16.0),
    ("euler", 4, 5.0),
]


@pytest.mark.parametrize("name,steps,shift", CASES)
def test_grid_matches_official(name, steps, shift):
    ours, ref = make_solver(name, steps, shift), wan_scheduler(name, steps, shift)
    assert ours.timesteps == ref.timesteps.tolist()
    assert ours.sigmas.shape == (steps + 1,) and ours.sigmas[-1] == 0
    np.testing.assert_allclose(ours.sigmas, ref.sigmas.numpy(), rtol=0, atol=1e-7)


def test_grid_known_values():
    # docs/wan.md section 7 and 10 tables
    ts, _ = wan_unipc_schedule(50, 5.0)
    assert ts[0] == 999 and ts[-1] == 92
    ts, _ = wan_unipc_schedule(40, 5.0)
    assert ts[:3] == [999, 994, 989] and ts[-3:] == [288, 208, 113]
    assert sum(t >= 900 for t in ts) == 15
    ts, _ = wan_flow_schedule(40, 16.0)
    assert ts[:3] == [1000, 998, 996] and sum(t >= 900 for t in ts) == 26
    assert float(shift_sigmas(0.5, 3.0)) == pytest.approx(0.75)


@pytest.mark.parametrize("name,steps,shift", CASES)
def test_trajectory_matches_official(name, steps, shift):
    errs = drive(make_solver(name, steps, shift), wan_scheduler(name, steps, shift))
    assert max(errs) < TOL, errs


def test_sensitivity_shift_and_order():
    """A wrong shift, a wrong solver order or a swapped solver is far outside the tolerance."""
    ref = lambda: wan_scheduler("unipc", 8, 5.0)  # noqa: E731
    assert min(drive(make_solver("unipc", 8, 4.0), ref())[:-1]) > 100 * TOL  # wrong shift
    ts, sig = wan_unipc_schedule(8, 5.0)
    assert max(drive(FlowUniPC(ts, sig, order=1), ref())) > 100 * TOL  # wrong order
    ts, sig = wan_flow_schedule(8, 5.0)
    assert max(drive(FlowDPMSolver(ts, sig, order=1), wan_scheduler("dpm++", 8, 5.0))) > 100 * TOL
    assert max(drive(make_solver("euler", 8, 5.0), wan_scheduler("dpm++", 8, 5.0))) > 100 * TOL


def test_stateful_order_reset_and_euler():
    s = make_solver("unipc", 4, 5.0)
    x = mx.zeros(SHAPE)
    s.step(mx.ones(SHAPE), 0, x)
    with pytest.raises(ValueError):
        s.step(mx.ones(SHAPE), 2, x)
    s.reset()
    s.step(mx.ones(SHAPE), 0, x)  # fine after reset
    with pytest.raises(ValueError):
        make_solver("ddim", 4, 5.0)
    e = euler_step(mx.array([1.0]), mx.array([2.0]), 1.0, 0.75)
    assert float(e[0]) == pytest.approx(0.5)
    # UniPC's last step returns the x0 prediction x - sigma * v exactly (no inf arithmetic)
    s = make_solver("unipc", 1, 5.0)
    out = s.step(mx.full(SHAPE, 2.0), 0, mx.ones(SHAPE))
    np.testing.assert_allclose(np.array(out), 1.0 - float(s.sigmas[0]) * 2.0, rtol=1e-6)
