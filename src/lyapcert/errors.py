"""Typed exceptions of lyapcert, all in one place.

Each subclasses the builtin it refines, so ``except ValueError`` still works for callers that do
not know lyapcert. Messages name the field, the value and what was expected.
"""

from __future__ import annotations


class LyapcertError(Exception):
    """Base class of every error lyapcert raises on purpose."""


class SystemDefinitionError(LyapcertError, ValueError):
    """A system definition (Python, equations or TOML file) is invalid.

    ``field`` names the offending field (for example ``"dynamics.x2"`` or ``"domain"``).
    """

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ExpressionError(SystemDefinitionError):
    """An equation could not be parsed: syntax error, unknown symbol or unsupported construct."""


class EquilibriumError(SystemDefinitionError):
    """The stated equilibrium is not one: f(x*, u*) != 0 (continuous time) or F(x*, u*) != x*."""


class ConfigFileError(SystemDefinitionError):
    """A TOML file could not be read or has the wrong structure (unknown keys included)."""


class UnknownSystemError(LyapcertError, KeyError):
    """A name is neither a registry system nor an existing file."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class SystemTypeError(LyapcertError, TypeError):
    """Something that is not a system was passed where one is expected (``lyapcert.as_system``
    takes a ``System``, a registry name or the path of a TOML system file)."""


class ShapeError(LyapcertError, ValueError):
    """A tensor passed to a system or simulator has the wrong shape."""


class SimulationError(LyapcertError, RuntimeError):
    """Simulation could not be carried out (for example an invalid step or horizon)."""


class UnsupportedOperationError(LyapcertError, TypeError):
    """The bound engine has no rule for some operations of a computation (all listed at once)."""

    def __init__(self, operations):
        self.operations = list(operations)
        listed = "; ".join(self.operations)
        super().__init__(
            f"the bound engine cannot bound {len(self.operations)} operation(s): {listed}. "
            "Supported: + - * / ** (constant exponent), matmul and linear layers with constant "
            "weights, relu, leaky_relu, elu, silu, hardtanh, relu6, tanh, sigmoid, softplus, "
            "sin, cos, exp, log, sqrt, abs, "
            "atan, clamp, minimum, maximum, sum, indexing, stack, cat, reshape and view."
        )


class VerificationError(LyapcertError, ValueError):
    """A verification request is invalid (for example a candidate of the wrong shape)."""


class CertificateFileError(LyapcertError, ValueError):
    """A certificate directory is missing, unreadable or malformed."""


class OptionsError(LyapcertError, ValueError):
    """A method option is unknown or has a value of the wrong type."""


class MethodError(LyapcertError, RuntimeError):
    """A method failed to produce a candidate (for example NaN weights or a failed solver)."""


class TrainingInterrupted(LyapcertError):
    """Training stopped on Ctrl-C or SIGTERM; ``checkpoint`` is the file that ``--resume`` continues
    from (``None`` when checkpoints were off)."""

    def __init__(self, method: str, checkpoint):
        self.method = method
        self.checkpoint = checkpoint
        where = (
            f"checkpoint saved at {checkpoint}; continue with the same command and --resume"
            if checkpoint is not None
            else "no checkpoint was kept (checkpoints were off)"
        )
        super().__init__(f"{method}: training interrupted; {where}")


class ModelFileError(LyapcertError, ValueError):
    """A model file (ONNX or TorchScript: a candidate ``V``) cannot be used: missing, of an unknown
    type, unreadable, with operations the converter does not support (all listed at once), or not
    the shape expected. Controller files report the same problems as ``ControllerError``."""


class ControllerError(LyapcertError, ValueError):
    """A controller is unusable: wrong output shape, not ``u*`` at ``x*``, not a model file, or
    operations the converter does not support."""


class PlotError(LyapcertError, ValueError):
    """A plot or animation request is invalid (for example zero frames, an unknown file type, or
    an MP4 without an ffmpeg writer)."""


class ReportError(LyapcertError, ValueError):
    """A report request is invalid: the folder is missing, is neither a bench results folder nor
    a certificate folder, or holds an unreadable JSON file."""
