"""Flow-matching sampling: sigma schedules, solvers and guidance (see schedules.py, solvers.py)."""
from .schedules import shift_sigmas, wan_flow_schedule, wan_unipc_schedule
from .solvers import FlowDPMSolver, FlowEuler, FlowSolver, FlowUniPC, euler_step, make_solver

__all__ = ["shift_sigmas", "wan_flow_schedule", "wan_unipc_schedule", "FlowDPMSolver", "FlowEuler",
           "FlowSolver", "FlowUniPC", "euler_step", "make_solver"]
