"""Checks of the environment lyapcert runs in, made once at start-up (``lyapcert`` command).

``torch_build_warning()``: a CUDA build of PyTorch on a machine without a GPU works, but is a
multi-GB install that a CPU-only machine does not need; the CPU build does the same work.
"""

from __future__ import annotations

CPU_WHEELS = "https://download.pytorch.org/whl/cpu"
"""PyTorch's own index of CPU-only wheels."""

_warned = False


def torch_build_warning() -> str | None:
    """The warning for a CUDA build of torch without a usable GPU, the first time it applies in
    this process (``None`` after that, and whenever the build is CPU-only or a GPU is there)."""
    global _warned
    if _warned:
        return None
    import torch

    cuda = getattr(torch.version, "cuda", None)
    if cuda is None or torch.cuda.is_available():
        return None
    _warned = True
    return (
        f"lyapcert: PyTorch {torch.__version__} is a CUDA {cuda} build, but no GPU is available. "
        "It works on the CPU, but it is a multi-GB install; a CPU-only machine needs only the "
        f"CPU build: pip install torch --index-url {CPU_WHEELS} (then pip install lyapcert)."
    )
