"""Controllers ``u = k(x)`` for controlled systems: linear (LQR), neural, and imported ones.

Every controller is a ``torch.nn.Module`` ``[batch, n] -> [batch, m]`` written with operations the
bound engine knows, saturated to the system's input bounds, and equal to ``u*`` at ``x*``.
"""

from lyapcert.control.checks import check_controller
from lyapcert.control.linear import LinearController, lqr
from lyapcert.control.neural import NeuralController

__all__ = ["LinearController", "NeuralController", "check_controller", "lqr"]
