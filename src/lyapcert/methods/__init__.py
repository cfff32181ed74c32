"""Methods that propose Lyapunov function candidates (the verifier decides)."""

from lyapcert.errors import OptionsError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.neural import NeuralLyapunovMethod, NeuralOptions
from lyapcert.methods.neural_roa import NeuralROAMethod, NeuralROAOptions
from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions
from lyapcert.methods.sos import SOSMethod, SOSOptions
from lyapcert.methods.zubov import NeuralZubovMethod, ZubovOptions

METHODS: dict[str, type[Method]] = {
    QuadraticMethod.name: QuadraticMethod,
    SOSMethod.name: SOSMethod,
    NeuralLyapunovMethod.name: NeuralLyapunovMethod,
    NeuralZubovMethod.name: NeuralZubovMethod,
    NeuralROAMethod.name: NeuralROAMethod,
}


def get_method(name: str) -> Method:
    """The method called ``name`` (see ``METHODS``)."""
    if name not in METHODS:
        raise OptionsError(
            f"--method: unknown method {name!r}; expected one of {', '.join(METHODS)}"
        )
    return METHODS[name]()


__all__ = [
    "METHODS",
    "Fit",
    "Method",
    "NeuralLyapunovMethod",
    "NeuralOptions",
    "NeuralROAMethod",
    "NeuralROAOptions",
    "NeuralZubovMethod",
    "QuadraticMethod",
    "QuadraticOptions",
    "SOSMethod",
    "SOSOptions",
    "ZubovOptions",
    "get_method",
]
