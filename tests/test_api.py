"""The public Python API: one input-normalising function at the boundary (``lyapcert.as_system``),
so every public function that takes a system takes a ``System``, a registry name or a system file;
``CertifyResult``'s top-level ``verdict``, ``level``, ``hole``, ``condition`` and
``certified_volume``; and a docstring of its own on every public name."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from pathlib import Path

import pytest
import torch

import lyapcert
from lyapcert.certificates import load_candidate
from lyapcert.control import check_controller, lqr
from lyapcert.control.closed_loop import close_loop
from lyapcert.control.imported import load_controller
from lyapcert.errors import (
    ConfigFileError,
    LyapcertError,
    SystemTypeError,
    UnknownSystemError,
)
from lyapcert.simulate import (
    default_sample,
    make_stepper,
    sample_points,
    simulate,
    slice_grid,
    true_roa,
    vector_field,
)
from lyapcert.simulate.roa import cached_true_roa
from lyapcert.verify import Condition, Verdict, verify_candidate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ------------------------------------------------------------------ as_system


def test_as_system_takes_a_system_a_name_or_a_file():
    vdp = lyapcert.get_system("vanderpol")
    assert lyapcert.as_system(vdp) is vdp  # a System passes unchanged
    loop = lyapcert.get_system("inverted_pendulum").closed_loop("lqr")
    assert lyapcert.as_system(loop) is loop  # a closed loop is a System
    assert lyapcert.as_system("vanderpol").fingerprint() == vdp.fingerprint()
    duffing = EXAMPLES / "duffing.toml"
    assert lyapcert.as_system(str(duffing)).name == "duffing"
    assert lyapcert.as_system(duffing).name == "duffing"  # a pathlib.Path is a file


def test_as_system_refuses_anything_else_with_a_typed_error():
    for bad in (None, 3, 2.5, b"vanderpol", ["vanderpol"], lyapcert):
        with pytest.raises(SystemTypeError, match="system: expected a System, a registry name"):
            lyapcert.as_system(bad)
    assert issubclass(SystemTypeError, TypeError) and issubclass(SystemTypeError, LyapcertError)
    with pytest.raises(SystemTypeError, match="controller: expected"):
        lyapcert.as_system(None, field="controller")  # the message names the argument


def test_as_system_names_the_close_registry_names_and_refuses_empty_names():
    with pytest.raises(UnknownSystemError, match="Did you mean vanderpol"):
        lyapcert.as_system("vanderpo")
    for empty in ("", "   "):  # '' would otherwise be the current folder
        with pytest.raises(UnknownSystemError, match="system"):
            lyapcert.as_system(empty)
    with pytest.raises(ConfigFileError, match="no such file"):
        lyapcert.as_system(Path("no-such-system.toml"))


def test_a_certificate_is_refused_with_a_hint_to_its_system(tmp_path):
    lyapcert.certify("cubic_1d", "quadratic", out=tmp_path / "cert", roa=False)
    cert = lyapcert.load(tmp_path / "cert")
    with pytest.raises(SystemTypeError, match=r"pass its \.system"):
        lyapcert.as_system(cert)
    assert lyapcert.as_system(cert.system) is cert.system


# --------------------------------------- every public function that takes a system takes a name

x_vdp = torch.tensor([[0.5, -0.2]], dtype=torch.float64)
V_VDP = "1.5*x1**2 - x1*x2 + x2**2"  # a Lyapunov function of vanderpol's linearisation

# (call with the system in first place, what to check on the answer); each runs in well under 1 s
NAMED_CALLS = {
    "simulate": (lambda s: simulate(s, x_vdp, horizon=0.1, step=0.05).final.shape == (1, 2)),
    "vector_field": (lambda s: vector_field(s)(x_vdp).shape == (1, 2)),
    "make_stepper": (lambda s: make_stepper(s, 0.01)(x_vdp).shape == (1, 2)),
    "default_sample": (lambda s: default_sample(s).kind == "grid"),
    "sample_points": (lambda s: sample_points(s, default_sample(s, 4)).shape == (16, 2)),
    "slice_grid": (lambda s: slice_grid(s, (0, 1), 4)[0].shape == (16, 2)),
    "cached_true_roa": (lambda s: cached_true_roa(s) is None),
    "load_candidate": (lambda s: load_candidate(V_VDP, s).describe() != ""),
    "verify_candidate": (lambda s: verify_candidate(s, V_VDP, level=0.5).verified),
}


@pytest.mark.parametrize("name", sorted(NAMED_CALLS))
def test_public_functions_take_a_registry_name_a_file_or_a_system(name, tmp_path):
    call = NAMED_CALLS[name]
    # vanderpol (reversed time: stable at 0) under three spellings
    assert call("vanderpol")
    assert call(lyapcert.get_system("vanderpol"))
    spec = tmp_path / "vdp.toml"
    spec.write_text(
        'name = "vdp_file"\nstates = ["x1", "x2"]\n'
        'dynamics = ["-x2", "x1 - (1 - x1^2)*x2"]\ndomain = [[-2.5, 2.5], [-3.5, 3.5]]\n'
    )
    assert call(spec)
    with pytest.raises(SystemTypeError):
        call(None)
    with pytest.raises(UnknownSystemError):
        call("no_such_system")


def test_true_roa_takes_a_registry_name():
    estimate = true_roa("cubic_1d")
    assert estimate.system_name == "cubic_1d"
    assert estimate.volume == pytest.approx(2.0, abs=0.01)  # the true ROA is (-1, 1)


def test_controller_functions_take_a_registry_name(tmp_path):
    k = lqr("inverted_pendulum")
    check_controller(k, "inverted_pendulum")
    loop = close_loop("inverted_pendulum", k)
    assert loop.is_closed_loop and loop.open_loop.name == "inverted_pendulum"
    from model_files import export_model

    path = export_model(k, tmp_path / "k.onnx", outputs=("u",))
    assert load_controller(path, "inverted_pendulum")(x_vdp).shape == (1, 1)
    for call in (lqr, lambda s: close_loop(s, "lqr"), lambda s: check_controller(k, s)):
        with pytest.raises(SystemTypeError):
            call(None)


def test_verify_candidate_still_refuses_a_candidate_of_the_wrong_type():
    from lyapcert.errors import VerificationError

    with pytest.raises(VerificationError, match="candidate: expected"):
        verify_candidate("vanderpol", 3)


# ------------------------------------------------------------------ CertifyResult


def test_certify_takes_a_name_and_its_result_has_top_level_fields():
    res = lyapcert.certify("vanderpol", "quadratic", roa=False)
    assert res.verdict is Verdict.VERIFIED and res.verdict is res.result.verdict
    assert res.level == res.result.level and res.level > 0
    assert res.hole is None and res.hole is res.result.hole
    assert res.condition is Condition.ASYMPTOTIC
    assert res.certified_volume is not None and res.certified_volume > 0
    assert res.verified
    for name in ("verdict", "level", "hole", "condition"):  # read-only views of ``result``
        with pytest.raises(AttributeError):
            setattr(res, name, None)
    # to_dict is unchanged: the Result's keys plus the pipeline's, nothing more
    d = res.to_dict()
    pipeline = {f.name for f in dataclasses.fields(res)} - {"result", "info"} | {"method_info"}
    assert set(d) == set(res.result.to_dict()) | pipeline
    assert d["verdict"] == "verified" and d["level"] == res.level and d["hole"] == "none"


def test_certify_refuses_a_non_system_with_a_typed_error():
    with pytest.raises(SystemTypeError, match="system: expected"):
        lyapcert.certify(42, "quadratic")


# ------------------------------------------------------------------ docstrings

SUBPACKAGES = (
    "lyapcert.systems",
    "lyapcert.simulate",
    "lyapcert.verify",
    "lyapcert.control",
    "lyapcert.methods",
    "lyapcert.certificates",
    "lyapcert.bench",
    "lyapcert.bounds",
    "lyapcert.models",
)
PENDING: set[str] = set()  # public names allowed to lack a docstring: none


def _own_doc(obj) -> str:
    """The object's own docstring: a class's from its ``__dict__`` (not inherited), without the
    signature a dataclass writes when there is none."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return ""
        return doc.strip()
    if isinstance(obj, property):
        obj = obj.fget
    return (getattr(obj, "__doc__", None) or "").strip()


def _public_names():
    for module_name in ("lyapcert", *SUBPACKAGES):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if name.startswith("__") or not (inspect.isclass(obj) or callable(obj)):
                continue  # __version__, constants (METHODS, BACKENDS, suffix tuples)
            yield f"{module_name}.{name}", obj


def test_every_public_name_has_a_docstring_of_its_own():
    missing = [q for q, obj in _public_names() if not _own_doc(obj) and q not in PENDING]
    assert not missing, f"public names without a docstring: {missing}"
    assert set(lyapcert.__all__) >= {"as_system", "certify", "load", "CertifyResult"}


def test_every_public_member_of_the_top_level_classes_has_a_docstring():
    missing = []
    for name in lyapcert.__all__:
        cls = getattr(lyapcert, name)
        if not inspect.isclass(cls) or issubclass(cls, BaseException):
            continue
        for member, value in vars(cls).items():
            if member.startswith("_") or not (callable(value) or isinstance(value, property)):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if not _own_doc(value) and f"lyapcert.{name}.{member}" not in PENDING:
                missing.append(f"lyapcert.{name}.{member}")
    assert not missing, f"public members without a docstring: {missing}"


def test_pending_names_exist():
    """``PENDING`` lists only real names (so a rename does not silently keep an exemption)."""
    for qualified in PENDING:
        obj = lyapcert
        for part in qualified.split(".")[1:]:
            obj = getattr(obj, part)  # AttributeError for a name that is gone


def test_metric_functions_take_a_registry_name():
    from lyapcert.certificates.candidates import QuadraticCandidate
    from lyapcert.metric import box_sample, certified_volume, ellipsoid_volume

    s = lyapcert.get_system("vanderpol")
    cand = QuadraticCandidate([[1.0, 0.0], [0.0, 1.0]], s)
    assert ellipsoid_volume("vanderpol", cand, 1.0) == ellipsoid_volume(s, cand, 1.0)
    assert box_sample("vanderpol", 8).shape == (8, 2)
    assert certified_volume("vanderpol", cand, 1.0).volume == pytest.approx(math.pi, rel=1e-12)
