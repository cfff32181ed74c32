"""The benchmark registry: every system of shared/benchmarks.md, defined once, by equations.

Each entry is the plain-data definition of ``lyapcert.systems.spec`` (the fields of a TOML system
file) plus simulation hints for the true region of attraction. Names, equations, parameters,
boxes, input bounds and variant names follow shared/benchmarks.md exactly. Where that page says
"state it", the choice made here is documented in the entry's ``description``.

Discrete-time variants (suffix ``-dt``) are the explicit Euler maps of the continuous-time
systems with the step of the published setup. Wide variants (suffix ``-wide``) are the same
continuous-time systems on the larger verification boxes of the 2025 two-stage setup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lyapcert.errors import UnknownSystemError
from lyapcert.systems.spec import load_system_file, system_from_spec
from lyapcert.systems.system import System

SHARED = "lyapcert benchmark registry"
"""The registry's own definitions (the comparison of BENCHMARKS.md); papers are named beside."""
ICML2024 = (
    "Yang, Dai, Schmidt, Zhang, Dai (ICML 2024), Lyapunov-stable neural control for state and "
    "output feedback; code Verified-Intelligence/Lyapunov_Stable_NN_Controllers"
)
TWO_STAGE = (
    "Li, Zhong, Hu, Zhang (2025), Two-stage learning of stabilizing neural controllers via Zubov "
    "sampling and iterative domain expansion; code Verified-Intelligence/"
    "Two-Stage_Neural_Controller_Training"
)
# the 2025 verification boxes are the half-widths of RADIUS_MAP in that repository's
# src/verification/run_verify.sh (commit 5a650f5b)
TWO_STAGE_BOXES = f"{TWO_STAGE} (box radii: RADIUS_MAP of src/verification/run_verify.sh)"
LYZNET = (
    "Liu, Meng, Fitzsimmons, Zhou, Physics-informed neural network Lyapunov functions "
    "(Zubov training, dReal verification; the LyZNet toolbox)"
)
FOSSIL = "FOSSIL benchmark set (Abate, Ahmed, Edwards, Giacobbe, Peruffo), as named there"


LAGRANGE = (
    "Lagrange's equations with Rayleigh's dissipation function: Goldstein, Poole, Safko, "
    "Classical Mechanics, 3rd ed. (2002), sections 1.4-1.5"
)
_DP_R1 = "(-m2*l1*l2*sin(th1 - th2)*w2**2 - (m1 + m2)*g*l1*sin(th1) - b*(2*w1 - w2))"
_DP_R2 = "(m2*l1*l2*sin(th1 - th2)*w1**2 - m2*g*l2*sin(th2) - b*(w2 - w1))"
_DP_DET = "(m1 + m2*sin(th1 - th2)**2)"
_DOUBLE_PENDULUM = [
    "w1",
    "w2",
    f"(l2*{_DP_R1} - l1*cos(th1 - th2)*{_DP_R2}) / (l1**2*l2*{_DP_DET})",
    f"((m1 + m2)*l1*{_DP_R2} - m2*l2*cos(th1 - th2)*{_DP_R1}) / (m2*l1*l2**2*{_DP_DET})",
]
"""The double pendulum's right-hand side (th1, th2, w1, w2): M(th)^-1 r by Cramer's rule."""
_DOUBLE_PENDULUM_ENERGY = (
    "(m1 + m2)*l1**2*w1**2/2 + m2*l2**2*w2**2/2 + m2*l1*l2*w1*w2*cos(th1 - th2)"
    " + (m1 + m2)*g*l1*(1 - cos(th1)) + m2*g*l2*(1 - cos(th2))"
)


@dataclass(frozen=True)
class RegistryEntry:
    """A registry system: its definition, kind, simulation hints and (DT variants) Euler step.

    ``horizon`` and ``step`` are the default simulation horizon and integration step used for the
    true ROA; ``convergence_radius`` is the default radius (in box-scaled units) of the ball
    around ``x*`` whose entry counts as convergence; ``periods`` (per state, 0: none) the periods
    of the dynamics in angle states, so that a trajectory settling at a shifted copy of ``x*``
    (a pendulum that went over the top) is labelled at once (``ConvergenceCriterion.periods``).
    """

    spec: Mapping[str, object]
    category: str  # "autonomous" or "controlled"
    horizon: float = 50.0
    step: float = 0.02
    convergence_radius: float = 0.01
    periods: tuple[float, ...] = ()
    discretize_dt: float | None = None
    base: str | None = None
    notes: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def build(self) -> System:
        if self.base is not None:
            base = _ENTRIES[self.base].build()
            return base.discretize(self.discretize_dt, name=self.name)
        return system_from_spec(self.spec)


def _autonomous(
    name, states, dynamics, domain, *, params=None, description, source, candidates=None, **hints
):
    spec = {
        "name": name,
        "states": states,
        "dynamics": dynamics,
        "domain": domain,
        "params": params or {},
        "description": description,
        "source": source,
    }
    if candidates:
        spec["candidates"] = candidates
    return RegistryEntry(spec=spec, category="autonomous", **hints)


def _controlled(
    name,
    states,
    inputs,
    dynamics,
    domain,
    input_bounds,
    *,
    description,
    params=None,
    source,
    equilibrium_input=None,
    **hints,
):
    spec = {
        "name": name,
        "states": states,
        "inputs": inputs,
        "dynamics": dynamics,
        "domain": domain,
        "input_bounds": input_bounds,
        "params": params or {},
        "description": description,
        "source": source,
    }
    if equilibrium_input is not None:
        spec["equilibrium_input"] = equilibrium_input
    return RegistryEntry(spec=spec, category="controlled", **hints)


def _interconnected_dynamics(n_oscillators: int = 5) -> dict[str, str]:
    """Chain of softening Duffing oscillators with spring coupling to the neighbours (fixed ends).

    p_i' = q_i;  q_i' = -p_i + a p_i^3 - c q_i + k (p_{i-1} - 2 p_i + p_{i+1}),  p_0 = p_6 = 0.
    """
    dyn = {}
    for i in range(1, n_oscillators + 1):
        left = f"p{i - 1}" if i > 1 else "0"
        right = f"p{i + 1}" if i < n_oscillators else "0"
        dyn[f"p{i}"] = f"q{i}"
        dyn[f"q{i}"] = f"-p{i} + a*p{i}**3 - c*q{i} + k*({left} - 2*p{i} + {right})"
    return dyn


_DEFINITIONS: list[RegistryEntry] = [
    # ------------------------------------------------------------------ autonomous
    _autonomous(
        "pendulum",
        ["x1", "x2"],
        ["x2", "-sin(x1) - b*x2"],
        [[-3.5, 3.5], [-3, 3]],
        params={"b": 0.1},
        description="Damped pendulum. Energy E = x2^2/2 + 1 - cos(x1) has E' = -b x2^2 <= 0: "
        "decreasing, but not strictly (the ready candidate 'energy').",
        candidates={"energy": "x2**2/2 + 1 - cos(x1)"},
        source=SHARED,
        horizon=200.0,
        step=0.05,
    ),
    _autonomous(
        "double_pendulum",
        ["th1", "th2", "w1", "w2"],
        _DOUBLE_PENDULUM,
        [["-pi", "pi"], ["-pi", "pi"], ["-2*pi", "2*pi"], ["-2*pi", "2*pi"]],
        params={"m1": 1.0, "m2": 1.0, "l1": 1.0, "l2": 1.0, "g": 9.81, "b": 0.5},
        description="Damped double pendulum: point masses m1, m2 on massless rods l1, l2, angles "
        "th1, th2 from the downward vertical (hanging at the origin), viscous damping b at both "
        "joints (the second on the relative rate w2 - w1). From the Lagrangian "
        "T = (m1+m2) l1^2 w1^2/2 + m2 l2^2 w2^2/2 + m2 l1 l2 w1 w2 cos(th1-th2), "
        "U = (m1+m2) g l1 (1-cos th1) + m2 g l2 (1-cos th2) and the Rayleigh dissipation "
        "D = b w1^2/2 + b (w2-w1)^2/2: M(th) [w1', w2'] = r with "
        "M = [[(m1+m2) l1^2, m2 l1 l2 cos(th1-th2)], [m2 l1 l2 cos(th1-th2), m2 l2^2]], "
        "r1 = -m2 l1 l2 sin(th1-th2) w2^2 - (m1+m2) g l1 sin th1 - b (2 w1 - w2), "
        "r2 = m2 l1 l2 sin(th1-th2) w1^2 - m2 g l2 sin th2 - b (w2 - w1), solved by Cramer's rule "
        "(det M = m2 l1^2 l2^2 (m1 + m2 sin^2(th1-th2)) > 0). The energy E = T + U (the ready "
        "candidate 'energy') has E' = -b (w1^2 + (w2-w1)^2) <= 0: decreasing, but not strictly.",
        source=f"{SHARED}; {LAGRANGE}",
        candidates={"energy": _DOUBLE_PENDULUM_ENERGY},
        horizon=60.0,
        step=0.02,
        # box-scaled 0.2: |th| <= 0.63, |w| <= 1.26, where E <= 9.7 < 19.62 = m2 g 2 l2, the
        # lowest saddle (th1, th2) = (0, pi); E does not increase, so such a state can never
        # go over the top and converges to x* (LaSalle): the box lies in the ROA
        convergence_radius=0.2,
        periods=(2 * math.pi, 2 * math.pi, 0.0, 0.0),
    ),
    _autonomous(
        "vanderpol",
        ["x1", "x2"],
        ["-x2", "x1 - mu*(1 - x1**2)*x2"],
        [[-2.5, 2.5], [-3.5, 3.5]],
        params={"mu": 1.0},
        description="Reversed-time Van der Pol oscillator; the true ROA is the interior of the "
        "(unstable) limit cycle, area 13.72.",
        source=f"{SHARED}; {LYZNET}",
        horizon=40.0,
        step=0.02,
    ),
    _autonomous(
        "vanderpol-mu3",
        ["x1", "x2"],
        ["-x2", "x1 - mu*(1 - x1**2)*x2"],
        [[-3, 3], [-6, 6]],
        params={"mu": 3.0},
        description="Reversed-time Van der Pol oscillator, mu = 3; true ROA area 20.49.",
        source=f"{SHARED}; {LYZNET}",
        horizon=40.0,
        step=0.01,
    ),
    _autonomous(
        "power_system",
        ["x1", "x2"],
        ["x2", "-0.5*x2 - (sin(x1 + d) - sin(d))"],
        [[-2, 3], [-3, 1.5]],
        params={"d": "pi/3"},
        description="Single machine against an infinite bus (swing equation), shifted so that "
        "the stable equilibrium is the origin; true ROA area about 9.94.",
        source=f"{SHARED}; {LYZNET}",
        horizon=80.0,
        step=0.02,
    ),
    _autonomous(
        "pendulum_linear_control",
        ["x1", "x2"],
        ["x2", "sin(x1) - x2 - (4.4142*x1 + 2.3163*x2)"],
        [[-4, 4], [-10, 10]],
        description="Inverted pendulum closed by the fixed linear feedback "
        "u = -(4.4142 x1 + 2.3163 x2).",
        source=SHARED,
        horizon=40.0,
        step=0.01,
    ),
    _autonomous(
        "cubic_1d",
        ["x"],
        ["-x + x**3"],
        [[-2, 2]],
        description="x' = -x + x^3: equilibria at 0 (stable) and +-1 (unstable); true ROA (-1, 1).",
        source=SHARED,
        horizon=30.0,
        step=0.01,
    ),
    _autonomous(
        "poly2",
        ["x", "y"],
        ["-x**3 + y", "-x - y"],
        [[-1, 1], [-1, 1]],
        description="Polynomial benchmark (Z3 can cross-check).",
        source=f"{SHARED}; {FOSSIL}",
        horizon=60.0,
        step=0.02,
    ),
    _autonomous(
        "poly3",
        ["x", "y"],
        ["-x**3 - y**2", "x*y - y**3"],
        [[-1, 1], [-1, 1]],
        description="Polynomial benchmark with a zero linearisation (convergence is only "
        "polynomial, so the default convergence ball is larger).",
        source=f"{SHARED}; {FOSSIL}",
        horizon=200.0,
        step=0.05,
        convergence_radius=0.1,
    ),
    _autonomous(
        "nonpoly0",
        ["x", "y"],
        ["-x + x*y", "-y"],
        [[-1, 1], [-1, 1]],
        description="Non-polynomial benchmark (bilinear term).",
        source=f"{SHARED}; {FOSSIL}",
        horizon=40.0,
        step=0.02,
    ),
    _autonomous(
        "nonpoly2_3d",
        ["x", "y", "z"],
        ["-x", "-2*y + 0.1*x*y**2 + z", "-z - 1.5*y"],
        [[-1, 1], [-1, 1], [-1, 1]],
        description="Three-state benchmark.",
        source=f"{SHARED}; {FOSSIL}",
        horizon=40.0,
        step=0.02,
    ),
    _autonomous(
        "damped_sho",
        ["x", "v"],
        ["v", "-2*zeta*w0*v - w0**2*x"],
        [[-5, 5], [-2, 2]],
        params={"zeta": 0.5, "w0": 1.0},
        description="Damped simple harmonic oscillator (linear): the quadratic certificate is "
        "exact and the true ROA is the whole box.",
        source=SHARED,
        horizon=40.0,
        step=0.02,
    ),
    _autonomous(
        "interconnected_10d",
        [f"{v}{i}" for i in range(1, 6) for v in ("p", "q")],
        _interconnected_dynamics(),
        [[-10, 10]] * 10,
        params={"a": 0.01, "c": 0.5, "k": 0.1},
        description="Scale test: five softening Duffing oscillators in a chain, "
        "q_i' = -p_i + a p_i^3 - c q_i + k (p_{i-1} - 2 p_i + p_{i+1}) with p_0 = p_6 = 0 "
        "(a = 0.01, c = 0.5, k = 0.1); state order p1, q1, ..., p5, q5. The coupling is ours: "
        "the registry's specification leaves it to the code.",
        source=SHARED,
        horizon=60.0,
        step=0.02,
    ),
    # ------------------------------------------------------------------ controlled
    _controlled(
        "inverted_pendulum",
        ["th", "w"],
        ["u"],
        ["w", "(g/l)*sin(th) - b/(m*l**2)*w + u/(m*l**2)"],
        [[-12, 12], [-12, 12]],
        [[-6, 6]],
        params={"m": 0.15, "l": 0.5, "b": 0.1, "g": 9.81},
        description="Inverted pendulum, th = 0 upright, torque |u| <= 6 ('big'). Box [-12, 12]^2 "
        "as in the ICML 2024 setup, also used in continuous time (the 2025 two-stage setup "
        "verifies on the larger box +-(20, 100): inverted_pendulum-wide).",
        source=f"{SHARED}; {ICML2024}; {TWO_STAGE}",
        horizon=20.0,
        step=0.01,
    ),
    _controlled(
        "inverted_pendulum-small",
        ["th", "w"],
        ["u"],
        ["w", "(g/l)*sin(th) - b/(m*l**2)*w + u/(m*l**2)"],
        [[-12, 12], [-12, 12]],
        [[-0.75, 0.75]],
        params={"m": 0.15, "l": 0.5, "b": 0.1, "g": 9.81},
        description="Inverted pendulum with the small torque bound |u| <= 0.75. Box [-12, 12]^2 "
        "(the 2025 two-stage setup verifies on +-(19.2, 64.8): inverted_pendulum-small-wide).",
        source=f"{SHARED}; {ICML2024}",
        horizon=20.0,
        step=0.01,
    ),
    _controlled(
        "path_tracking",
        ["d", "th"],
        ["u"],
        ["v*sin(th)", "v*u/L - cos(th)/(R/v - sin(th))"],
        [[-3, 3], [-3, 3]],
        [[-0.84, 0.84]],
        params={"v": 2.0, "L": 1.0, "R": 10.0},
        equilibrium_input=["L/R"],
        description="Path tracking of a circle (distance error d, angle error th); u* = L/R. "
        "Box [-3, 3]^2 as in the ICML 2024 setup (the 2025 two-stage setup uses +-10: "
        "path_tracking-wide).",
        source=f"{SHARED}; {ICML2024}; {TWO_STAGE}",
        horizon=30.0,
        step=0.01,
    ),
    _controlled(
        "path_tracking-small",
        ["d", "th"],
        ["u"],
        ["v*sin(th)", "v*u/L - cos(th)/(R/v - sin(th))"],
        [[-3, 3], [-3, 3]],
        [[-0.5, 0.5]],
        params={"v": 2.0, "L": 1.0, "R": 10.0},
        equilibrium_input=["L/R"],
        description="Path tracking with the small input bound |u| <= 0.5. Box [-3, 3]^2 (the "
        "2025 two-stage setup uses +-10: path_tracking-small-wide).",
        source=f"{SHARED}; {ICML2024}",
        horizon=30.0,
        step=0.01,
    ),
    _controlled(
        "vanderpol_controlled",
        ["x1", "x2"],
        ["u"],
        ["x2", "-x1 + mu*(1 - x1**2)*x2 + u"],
        [[-4.8, 4.8], [-10.8, 10.8]],
        [[-1, 1]],
        params={"mu": 1.0},
        description="Forward-time Van der Pol oscillator with an input (open loop unstable). "
        "Box +-(4.8, 10.8): the verification box of the 2025 two-stage setup.",
        source=f"{SHARED}; {TWO_STAGE_BOXES}",
        horizon=30.0,
        step=0.01,
    ),
    _controlled(
        "double_integrator",
        ["x", "v"],
        ["u"],
        ["v", "u"],
        [[-26.4, 26.4], [-9.6, 9.6]],
        [[-1, 1]],
        description="Double integrator. Box +-(26.4, 9.6): the verification box of the 2025 "
        "two-stage setup.",
        source=f"{SHARED}; {TWO_STAGE_BOXES}",
        horizon=30.0,
        step=0.02,
    ),
    _controlled(
        "cartpole",
        ["p", "th", "p_dot", "th_dot"],
        ["u"],
        [
            "p_dot",
            "th_dot",
            "(u + mp*sin(th)*(l*th_dot**2 - g*cos(th))) / (mc + mp*sin(th)**2)",
            "(-u*cos(th) - mp*l*th_dot**2*cos(th)*sin(th) + (mc + mp)*g*sin(th))"
            " / (l*(mc + mp*sin(th)**2))",
        ],
        [[-1, 1]] * 4,
        [[-30, 30]],
        params={"mc": 1.0, "mp": 0.1, "l": 1.0, "g": 9.81},
        description="Cart-pole, th = 0 upright, state (p, th, p', th'). Box [-1, 1]^4 (the DT "
        "setup; the 2025 two-stage setup verifies on +-(3.6, 2.4, 12, 12): cartpole-wide).",
        source=f"{SHARED}; {TWO_STAGE}",
        horizon=20.0,
        step=0.01,
    ),
    _controlled(
        "quadrotor2d",
        ["x", "y", "th", "x_dot", "y_dot", "th_dot"],
        ["u1", "u2"],
        [
            "x_dot",
            "y_dot",
            "th_dot",
            "-(u1 + u2)*sin(th)/m",
            "(u1 + u2)*cos(th)/m - g",
            "l*(u1 - u2)/I",
        ],
        [[-0.75, 0.75], [-0.75, 0.75], ["-pi/2", "pi/2"], [-4, 4], [-4, 4], [-3, 3]],
        [[0, "1.25*m*g"], [0, "1.25*m*g"]],
        params={"m": 0.486, "l": 0.25, "I": 0.00383, "g": 9.81},
        equilibrium_input=["m*g/2", "m*g/2"],
        description="Planar quadrotor, hover at the origin with u* = (mg/2, mg/2); each rotor in "
        "[0, 1.25 m g].",
        source=f"{SHARED}; {ICML2024}",
        horizon=20.0,
        step=0.005,
    ),
    _controlled(
        "pvtol",
        ["x", "y", "th", "xb", "yb", "w"],
        ["u1", "u2"],
        [
            "xb*cos(th) - yb*sin(th)",
            "xb*sin(th) + yb*cos(th)",
            "w",
            "yb*w - g*sin(th)",
            "-xb*w - g*cos(th) + (u1 + u2)/m",
            "d*(u1 - u2)/I",
        ],
        [[-1, 1]] * 6,
        [[0, 39.2], [0, 39.2]],
        params={"m": 4.0, "I": 0.0475, "d": 0.25, "g": 9.8},
        equilibrium_input=["m*g/2", "m*g/2"],
        description="Planar vertical take-off and landing aircraft, body-frame velocities "
        "(xb, yb); hover with u* = (mg/2, mg/2) = (19.6, 19.6).",
        source=f"{SHARED}; {ICML2024}",
        horizon=20.0,
        step=0.01,
    ),
    _controlled(
        "ducted_fan",
        ["x", "y", "th", "x_dot", "y_dot", "th_dot"],
        ["u1", "u2"],
        [
            "x_dot",
            "y_dot",
            "th_dot",
            "(-d*x_dot + u1*cos(th) - u2*sin(th))/m",
            "(-d*y_dot + u1*sin(th) + u2*cos(th) - m*g)/m",
            "r*u1/J",
        ],
        [[-2, 2], [-2, 2], ["-pi/4", "pi/4"], [-2, 2], [-2, 2], [-2, 2]],
        [[-10, 10], [0, 10]],
        params={"m": 11.2, "g": 0.28, "J": 0.0462, "r": 0.156, "d": 0.1},
        equilibrium_input=[0, "m*g"],
        description="Planar ducted fan; u* = (0, m g). Box chosen here: +-2 in positions and "
        "velocities, +-pi/4 in angle (the registry's specification leaves the box open).",
        source=f"{SHARED}; {TWO_STAGE}",
        horizon=40.0,
        step=0.01,
    ),
]


def _wide(name, base, domain, *, description):
    """The continuous-time controlled system ``base`` (same equations, parameters, inputs and
    simulation hints) on the larger verification box ``domain`` of the 2025 two-stage setup."""
    b = next(e for e in _DEFINITIONS if e.name == base)
    spec = b.spec
    return _controlled(
        name,
        spec["states"],
        spec["inputs"],
        spec["dynamics"],
        domain,
        spec["input_bounds"],
        params=spec["params"],
        equilibrium_input=spec.get("equilibrium_input"),
        description=description,
        source=f"{SHARED}; {TWO_STAGE_BOXES}",
        horizon=b.horizon,
        step=b.step,
        convergence_radius=b.convergence_radius,
    )


# The boxes of the 2025 two-stage table in shared/benchmarks.md ("Controlled, continuous time"),
# checked against RADIUS_MAP in the paper's code. vanderpol_controlled and double_integrator
# already use their boxes; quadrotor2d has one there too (+-(12, 13.2, 12, 19.2, 20.4, 88.8)) but
# no formal proof is published for it, so it has no wide variant here.
_DEFINITIONS += [
    _wide(
        "inverted_pendulum-wide",
        "inverted_pendulum",
        [[-20, 20], [-100, 100]],
        description="Inverted pendulum (|u| <= 6) on the 2025 two-stage verification box "
        "+-(20, 100) (th, w): the box of the published continuous-time certified volume 2,946.5.",
    ),
    _wide(
        "inverted_pendulum-small-wide",
        "inverted_pendulum-small",
        [[-19.2, 19.2], [-64.8, 64.8]],
        description="Inverted pendulum with |u| <= 0.75 on the 2025 two-stage verification box "
        "+-(19.2, 64.8) (th, w): the box of the published certified volume 1,169.2.",
    ),
    _wide(
        "path_tracking-wide",
        "path_tracking",
        [[-10, 10], [-10, 10]],
        description="Path tracking (|u| <= 0.84, u* = L/R) on the 2025 two-stage verification box "
        "+-10 in d and th: the box of the published certified volume 122.0.",
    ),
    _wide(
        "path_tracking-small-wide",
        "path_tracking-small",
        [[-10, 10], [-10, 10]],
        description="Path tracking with |u| <= 0.5 (u* = L/R) on the 2025 two-stage verification "
        "box +-10 in d and th: the box of the published certified volume 73.8.",
    ),
    _wide(
        "cartpole-wide",
        "cartpole",
        [[-3.6, 3.6], [-2.4, 2.4], [-12, 12], [-12, 12]],
        description="Cart-pole (|u| <= 30) on the 2025 two-stage verification box "
        "+-(3.6, 2.4, 12, 12) in (p, th, p', th'): the box of the published certified volume "
        "306.1.",
    ),
]

_DT_VARIANTS = [
    # name, base, dt (Euler), source of the step
    ("inverted_pendulum-dt", "inverted_pendulum", 0.05),
    ("inverted_pendulum-small-dt", "inverted_pendulum-small", 0.05),
    ("path_tracking-dt", "path_tracking", 0.05),
    ("path_tracking-small-dt", "path_tracking-small", 0.05),
    ("cartpole-dt", "cartpole", 0.05),
    ("quadrotor2d-dt", "quadrotor2d", 0.01),
    ("pvtol-dt", "pvtol", 0.05),
    ("double_pendulum-dt", "double_pendulum", 0.01),
]
_DT_SOURCES = {"double_pendulum-dt": "a step 20 times shorter than the slowest period, 2.6 s"}

_ENTRIES: dict[str, RegistryEntry] = {e.name: e for e in _DEFINITIONS}
for _name, _base, _dt in _DT_VARIANTS:
    _b = _ENTRIES[_base]
    _ENTRIES[_name] = RegistryEntry(
        spec={**_b.spec, "name": _name},
        category=_b.category,
        horizon=_b.horizon,
        step=_dt,
        convergence_radius=_b.convergence_radius,
        periods=_b.periods,
        discretize_dt=_dt,
        base=_base,
        notes=f"explicit Euler map of {_base} with dt = {_dt} "
        f"({_DT_SOURCES.get(_name, 'ICML 2024 setup')})",
    )

_CACHE: dict[str, System] = {}


def system_names(category: str | None = None) -> list[str]:
    """Registry names in registry order, optionally only ``"autonomous"`` or ``"controlled"``."""
    return [n for n, e in _ENTRIES.items() if category is None or e.category == category]


def registry_entry(name: str) -> RegistryEntry:
    """The registry's entry for ``name`` (its definition, hints and sources); raises
    ``UnknownSystemError`` for a name not in the registry."""
    try:
        return _ENTRIES[name]
    except KeyError:
        raise UnknownSystemError(_unknown_message(name)) from None


def get_system(name: str) -> System:
    """The registry system called ``name`` (built once, then shared; systems are immutable)."""
    entry = registry_entry(name)
    if name not in _CACHE:
        _CACHE[name] = entry.build()
    return _CACHE[name]


def registry_rows(category: str | None = None) -> list[dict[str, object]]:
    """One plain-data row per registry system (``lyapcert systems``): name, category, time, dt,
    states, inputs, domain and input bounds (as lists of ``[lo, hi]``)."""
    rows = []
    for name in system_names(category):
        s, entry = get_system(name), registry_entry(name)
        rows.append(
            {
                "name": name,
                "category": entry.category,
                "time": s.time,
                "dt": s.dt,
                "states": list(s.state_names),
                "inputs": list(s.input_names),
                "domain": s.domain.to_list(),
                "input_bounds": s.input_bounds.to_list() if s.input_bounds else None,
            }
        )
    return rows


def resolve_system(name_or_path: str | Path) -> System:
    """A registry name, or the path of a TOML system file."""
    key = str(name_or_path)
    if key in _ENTRIES:
        return get_system(key)
    path = Path(key)
    if path.suffix.lower() == ".toml" or path.exists():
        return load_system_file(path)
    raise UnknownSystemError(_unknown_message(key))


def _unknown_message(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(_ENTRIES), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"system: {name!r} is neither a registry name nor an existing file.{hint} "
        "Run `lyapcert systems` for the list, or pass the path of a .toml system file."
    )
