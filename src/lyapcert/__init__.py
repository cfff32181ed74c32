"""lyapcert: learn, formally certify and compare Lyapunov functions and regions of attraction."""

from lyapcert.api import as_system
from lyapcert.certificates.store import Certificate, load
from lyapcert.certify import CertifyResult, certify
from lyapcert.errors import LyapcertError
from lyapcert.systems import Box, System, get_system, resolve_system, system_names
from lyapcert.threads import set_threads

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Certificate",
    "CertifyResult",
    "LyapcertError",
    "System",
    "__version__",
    "as_system",
    "certify",
    "get_system",
    "load",
    "resolve_system",
    "set_threads",
    "system_names",
]
