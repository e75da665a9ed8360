"""Flow-matching sampling: sigma schedules, solvers / diffusion steps and guidance."""

from .guidance import GuidanceParams, cfg_delta, multimodal_guidance, rescale_guidance, stg_delta
from .schedules import (
    DISTILLED_SIGMAS,
    STAGE2_DISTILLED_SIGMAS,
    ltx2_sigmas,
    res2s_sigmas,
    shift_sigmas,
    wan_flow_schedule,
    wan_unipc_schedule,
)
from .solvers import (
    FlowDPMSolver,
    FlowEuler,
    FlowSolver,
    FlowUniPC,
    euler_step,
    euler_step_x0,
    make_solver,
    res2s_coefficients,
    res2s_noise,
    res2s_sample,
    sde_step,
)

__all__ = [
    "GuidanceParams",
    "cfg_delta",
    "multimodal_guidance",
    "rescale_guidance",
    "stg_delta",
    "DISTILLED_SIGMAS",
    "STAGE2_DISTILLED_SIGMAS",
    "ltx2_sigmas",
    "res2s_sigmas",
    "shift_sigmas",
    "wan_flow_schedule",
    "wan_unipc_schedule",
    "FlowDPMSolver",
    "FlowEuler",
    "FlowSolver",
    "FlowUniPC",
    "euler_step",
    "euler_step_x0",
    "make_solver",
    "res2s_coefficients",
    "res2s_noise",
    "res2s_sample",
    "sde_step",
]
