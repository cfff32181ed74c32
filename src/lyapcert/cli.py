"""The ``lyapcert`` command line: a thin shell over the library.

Exit statuses: 0 done, 1 a negative answer (for commands that give one), 2 bad input (nothing is
written). ``--json`` prints one JSON object on standard output; progress goes to standard error.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box as rich_box
from rich.console import Console
from rich.table import Table

from lyapcert.errors import LyapcertError, TrainingInterrupted

app = typer.Typer(
    name="lyapcert",
    help="Learn, formally certify and compare Lyapunov functions and regions of attraction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_DONE, EXIT_NEGATIVE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

SystemArg = Annotated[
    str, typer.Argument(help="A registry name (see `lyapcert systems`) or a .toml system file.")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object (fields in the README).")
]


RoaOpt = Annotated[
    bool | None,
    typer.Option(
        "--roa/--no-roa",
        help="Compare with the true ROA (share, simulation cross-check). Default: when it is "
        "cached (`lyapcert roa`), never simulating; --roa simulates it if needed.",
    ),
]


@app.callback()
def global_options(
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="CPU threads for the numerical work (PyTorch, BLAS); 0: one per core. "
            "Default: $LYAPCERT_THREADS, else 1 (fastest on a loaded machine; see the README).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Learn, formally certify and compare Lyapunov functions and regions of attraction."""
    from lyapcert.errors import OptionsError
    from lyapcert.threads import set_threads

    _global_errors.clear()
    try:
        set_threads(threads)
    except OptionsError as exc:
        # reported by the subcommand (handles_errors), whose --json is not parsed yet
        _global_errors.append(exc)


class Category(str, Enum):
    autonomous = "autonomous"
    controlled = "controlled"


def _jsonable(value: Any) -> Any:
    """Plain JSON values: tuples to lists, non-finite floats to null, numpy to Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, complex):
        return [value.real, value.imag]
    return value


def _emit_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(_jsonable(payload), indent=2) + "\n")


_global_errors: list[LyapcertError] = []  # a bad global option, for the subcommand to report


def handles_errors(fn):
    """Turn lyapcert's typed errors into a message on stderr (and JSON if asked) and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            if _global_errors:
                raise _global_errors.pop()
            return fn(*args, **kwargs)
        except LyapcertError as exc:
            if kwargs.get("as_json"):
                _emit_json({"error": str(exc), "error_type": type(exc).__name__})
            from rich.markup import escape

            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


# ---------------------------------------------------------------------------------------------


@app.command("systems")
@handles_errors
def systems_command(
    category: Annotated[Category | None, typer.Option(help="Only this kind of system.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the benchmark registry."""
    from lyapcert.systems import get_system, registry_rows

    rows = registry_rows(category.value if category else None)
    if as_json:
        _emit_json({"systems": rows})
        return
    if out.width >= _WIDE_SYSTEMS_TABLE:
        table = Table(title="lyapcert benchmark registry (sources: lyapcert show NAME)")
        for col in ("name", "kind", "time", "states", "inputs", "box", "input bounds"):
            table.add_column(
                col, overflow="fold", no_wrap=col in ("name", "kind", "time"), min_width=len(col)
            )
        for r in rows:
            s = get_system(r["name"])
            table.add_row(
                r["name"],
                r["category"],
                _time_text(r),
                ", ".join(r["states"]),
                ", ".join(r["inputs"]) or "-",
                _short_box(s.domain),
                _short_box(s.input_bounds) if s.input_bounds else "-",
            )
    else:
        # A narrow terminal: one line per state (and input) with its interval, no borders; the
        # kind is implied by the inputs (a controlled system has some).
        table = Table(
            title="lyapcert benchmark registry (controlled: has inputs; lyapcert show NAME)",
            box=rich_box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for col in ("name", "time", "states  box", "inputs  bounds"):
            table.add_column(col, overflow="fold", no_wrap=col in ("name", "time"))
        for r in rows:
            table.add_row(
                r["name"],
                _time_text(r),
                _named_intervals(r["states"], r["domain"]),
                _named_intervals(r["inputs"], r["input_bounds"] or []) or "-",
            )
    out.print(table)


# below this many columns, `lyapcert systems` prints one line per state instead of one per system
_WIDE_SYSTEMS_TABLE = 120


def _time_text(row: dict) -> str:
    return f"DT {row['dt']:g}" if row["dt"] else "CT"


def _named_intervals(names: list[str], pairs: list[list[float]]) -> str:
    width = max((len(n) for n in names), default=0)
    return "\n".join(f"{n:<{width}} [{lo:g}, {hi:g}]" for n, (lo, hi) in zip(names, pairs))


def _short_box(box) -> str:
    pairs = box.to_list()
    if len(pairs) > 1 and all(p == pairs[0] for p in pairs):
        return f"[{pairs[0][0]:g}, {pairs[0][1]:g}]^{len(pairs)}"
    return str(box)


@app.command("show")
@handles_errors
def show_command(system: SystemArg, as_json: JsonOpt = False) -> None:
    """Print a system: equations, parameters, box, equilibrium and linearisation."""
    import numpy as np

    from lyapcert.simulate.roa import system_report
    from lyapcert.systems import resolve_system

    s = resolve_system(system)
    info = system_report(s)
    if as_json:
        _emit_json(info)
        return
    eig = [complex(re, im) for re, im in info["eigenvalues"]]
    stable = info["locally_exponentially_stable"]
    kind = f"discrete time, dt = {s.dt:g}" if s.is_discrete else "continuous time"
    out.print(f"[bold]{s.name}[/]  ({kind})")
    if s.description:
        out.print(s.description)
    out.print("\n[bold]equations[/]")
    for line in s.equation_strings() or ["(defined in Python)"]:
        out.print(f"  {line}")
    if info["params"]:
        out.print(
            "\n[bold]parameters[/]  " + ", ".join(f"{k} = {v:g}" for k, v in info["params"].items())
        )
    out.print(f"\n[bold]box[/]          {s.domain}   (volume {s.domain.volume:g})")
    names = ", ".join(s.state_names)
    out.print(f"[bold]equilibrium[/]  ({names}) = ({', '.join(f'{v:g}' for v in s.equilibrium)})")
    if s.input_names:
        out.print(
            f"[bold]input[/]        ({', '.join(s.input_names)}), u* = "
            f"({', '.join(f'{v:g}' for v in s.equilibrium_input)}), bounds "
            f"{s.input_bounds if s.input_bounds else 'none'}"
        )
    which = "|eigenvalues| < 1" if s.is_discrete else "Re(eigenvalues) < 0"
    label = "A = df/dx" + (" (open loop, u = u*)" if s.input_names else "")
    out.print(f"\n[bold]linearisation at x*[/]  {label}")
    out.print(np.array2string(info["A"], precision=4, suppress_small=True))
    if s.input_names:
        out.print("B = df/du")
        out.print(np.array2string(info["B"], precision=4, suppress_small=True))
    out.print("eigenvalues: " + ", ".join(_complex(e) for e in eig))
    out.print(f"locally exponentially stable ({which}): [bold]{'yes' if stable else 'no'}[/]")
    if s.candidates:
        out.print("\n[bold]ready candidates[/]  (lyapcert verify SYSTEM --candidate NAME)")
        for key, text in s.candidates.items():
            out.print(f"  {key}: V = {text}")
    if s.source:
        out.print(f"\n[dim]source: {s.source}[/]")


def _complex(z) -> str:
    if abs(z.imag) < 1e-12:
        return f"{z.real:.4g}"
    return f"{z.real:.4g}{'+' if z.imag >= 0 else '-'}{abs(z.imag):.4g}j"


@app.command("roa")
@handles_errors
def roa_command(
    system: SystemArg,
    resolution: Annotated[
        int | None,
        typer.Option(
            help="Grid points per axis (up to 3 states) or Sobol points (above). Default: 2001 / 400 / 64 per axis, 65536 points."
        ),
    ] = None,
    horizon: Annotated[
        float | None, typer.Option(help="Simulated time per point (default: the system's).")
    ] = None,
    step: Annotated[
        float | None, typer.Option(help="RK4 step (continuous time; default: the system's).")
    ] = None,
    convergence_radius: Annotated[
        float | None, typer.Option(help="Box-scaled radius around x* that counts as converged.")
    ] = None,
    escape_radius: Annotated[
        float | None, typer.Option(help="Box-scaled radius beyond which a point has escaped.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the Sobol sample (4 or more states).")] = 0,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1, ...")] = "cpu",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the plot.")] = Path(
        "lyapcert-out"
    ),
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Save a plot of the ROA.")] = True,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse and store the labelled sample.")
    ] = True,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache folder (default $LYAPCERT_CACHE_DIR or ~/.cache/lyapcert)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Estimate the true region of attraction by simulating a dense sample of the box.

    Exit status 1 when no sample point converges to the equilibrium.
    """
    from lyapcert.simulate.roa import (
        ConvergenceCriterion,
        default_sample,
        is_locally_exponentially_stable,
        torch_device,
        true_roa,
    )
    from lyapcert.systems import resolve_system

    s = resolve_system(system)
    dev = torch_device(device)
    criterion = ConvergenceCriterion.for_system(
        s,
        horizon=horizon,
        step=step,
        convergence_radius=convergence_radius,
        escape_radius=escape_radius,
    )
    default_sample(s, resolution, seed)  # validate before any work or writing
    show_progress = not as_json  # a live bar, or plain lines in a log (lyapcert.logline)
    estimate = true_roa(
        s,
        resolution,
        criterion,
        seed=seed,
        device=dev,
        cache=cache,
        cache_dir=cache_dir,
        progress=show_progress,
    )
    stable = is_locally_exponentially_stable(s)
    plot_path = None
    if plot:
        from lyapcert.viz.roa_plot import save_roa_plot

        path = save_roa_plot(s, estimate, out_dir, criterion, device=dev, progress=show_progress)
        plot_path = str(path)
    payload = estimate.summary()
    payload.update(
        plot=plot_path,
        locally_exponentially_stable=stable,
        open_loop=bool(s.input_names),
        sample_description=estimate.sample.describe(),
    )
    if as_json:
        _emit_json(payload)
    else:
        _print_roa(s, estimate, stable, plot_path)
    if estimate.counts["converged"] == 0:
        raise typer.Exit(EXIT_NEGATIVE)


def _print_roa(s, estimate, stable, plot_path) -> None:
    c = estimate.counts
    n = len(estimate.outcomes)
    unit = {1: "length", 2: "area"}.get(s.n_states, "volume")
    out.print(
        f"[bold]{s.name}[/]: true ROA {unit} [bold]{estimate.volume:.6g}[/] = "
        f"{100 * estimate.fraction:.2f} % of the box (volume {estimate.box_volume:g})"
    )
    out.print(
        f"sample: {estimate.sample.describe()} ({n:,} points); "
        f"converged {c['converged']:,}, escaped {c['escaped']:,}, "
        f"settled elsewhere {c['settled_elsewhere']:,}, undecided {c['undecided']:,} "
        "(undecided counts as outside)"
    )
    cr = estimate.criterion
    out.print(
        f"criterion: RK4 step {cr.step:g}, horizon {cr.horizon:g}, converged within "
        f"{cr.convergence_radius:g} box half-widths of x*, escaped beyond {cr.escape_radius:g}"
    )
    if s.input_names:
        out.print("[yellow]open loop: the input is held at u* (no controller)[/]")
    if not stable:
        out.print(
            "[yellow]warning: x* is not locally exponentially stable; 'converged' means the "
            "trajectory entered the convergence box, which may not lie inside the ROA[/]"
        )
    where = "reused from the cache" if estimate.from_cache else f"{estimate.seconds:.1f} s"
    out.print(f"time: {where}" + (f"; cache {estimate.cache_path}" if estimate.cache_path else ""))
    if plot_path:
        out.print(f"plot: {plot_path}")


@app.command("verify")
@handles_errors
def verify_command(
    system: Annotated[
        str,
        typer.Argument(
            help="A registry name or .toml system file (with --candidate), or a certificate "
            "directory to re-check."
        ),
    ],
    candidate: Annotated[
        str | None,
        typer.Option(
            "--candidate",
            "-c",
            help="V as an expression in the state names, e.g. '0.5*x2**2 + 1 - cos(x1)', a ready "
            "candidate of the system by name (e.g. energy; `lyapcert show SYSTEM` lists them), "
            "or an ONNX / TorchScript file of a network V (.onnx, .pt, .pth, .ts; output "
            "[batch, 1]).",
        ),
    ] = None,
    controller: Annotated[
        str | None,
        typer.Option(
            help="Close the loop first (a controlled system): lqr, or an ONNX / TorchScript "
            "controller file (.onnx, .pt); checked (u* at x*) before anything runs.",
        ),
    ] = None,
    level: Annotated[
        float | None,
        typer.Option(help="Check this level; default: find the largest certified level."),
    ] = None,
    band: Annotated[
        tuple[float, float] | None,
        typer.Option(
            metavar="C1 C2",
            help="Check a published band claim as stated: dV/dt < 0 on {C1 <= V <= C2}; also "
            "reports whether {V <= C2} stays in the box, whether the hole {V < C1} is closed, "
            "and the largest level certified with no hole.",
        ),
    ] = None,
    auxiliary: Annotated[
        str | None,
        typer.Option(
            help="A second certificate W (expression or ONNX / TorchScript file) whose verified "
            "sublevel set closes the hole around x* (default: the quadratic of the linearisation).",
        ),
    ] = None,
    time_limit: Annotated[
        float,
        typer.Option(
            help="Seconds for the whole verification (one deadline for all its searches; with "
            "--band, for each of its parts)."
        ),
    ] = 120.0,
    max_boxes: Annotated[int, typer.Option(help="Boxes per branch-and-bound search.")] = 5_000_000,
    tolerance: Annotated[
        float, typer.Option(help="Relative tolerance of the largest level.")
    ] = 1e-3,
    device: Annotated[str, typer.Option(help="torch device for the boxes: cpu or cuda.")] = "cpu",
    decay_rate: Annotated[
        float,
        typer.Option(help="Discrete time: prove V(x+) - V(x) <= -k V(x) with this k (strictly)."),
    ] = 0.0,
    volume: Annotated[
        bool,
        typer.Option(
            "--volume/--no-volume",
            help="Report the volume of {V <= level} (exact for an ellipsoid, else a sample of "
            "the box) and, with a true ROA, its share of it.",
        ),
    ] = True,
    roa: RoaOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Save the certificate directory here (when a level was found)."),
    ] = None,
    parts: Annotated[
        int, typer.Option(help="Split the decrease search into this many sub-boxes.")
    ] = 1,
    linear: Annotated[
        bool | None,
        typer.Option(
            "--linear/--no-linear",
            help="Linear (CROWN) bounds where intervals leave a box open (default on; off: "
            "interval and mean-value bounds only, as before issue 15). With --search on a "
            "certificate directory, the saved setting unless given.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Where the parts run: local (here, one after another), process (worker "
            "processes on this machine, one per core) or ray."
        ),
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="For a certificate directory: re-run the whole search instead of re-checking "
            "its stored proof.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify a Lyapunov function candidate: asymptotic stability on {V <= c}, with no hole.

    `--out DIR` saves the certificate with copies of the candidate and controller files (their
    sha256 in certificate.json). `lyapcert verify DIR` re-checks a saved certificate from its
    stored proof (the decided
    boxes, evaluated again without search; `--search` re-runs the search instead, as for a
    folder saved without a proof) and must reach its verdict. Exit status 0 when verified (for
    DIR: and the saved verdict is reproduced), 1 when falsified, unknown or not reproduced, 2
    on bad input.
    """
    from lyapcert.certificates import load_candidate
    from lyapcert.control.closed_loop import close_loop
    from lyapcert.errors import VerificationError
    from lyapcert.systems import resolve_system
    from lyapcert.verify import VerifyOptions, verify_candidate
    from lyapcert.verify.options import check_device, mapper_for

    check_device(device)
    if Path(system).is_dir():
        if candidate is not None or level is not None or controller is not None:
            raise VerificationError(
                "a certificate directory is re-checked as saved: drop --candidate, --controller "
                "and --level"
            )
        if not search and (linear is not None or device != "cpu"):
            raise VerificationError(
                "--linear/--no-linear and --device apply to a search: add --search (the stored "
                "proof is re-checked box by box, with no search)"
            )
        overrides = {"device": device} if device != "cpu" else {}
        if linear is not None:
            overrides["linear"] = linear
        _recheck(Path(system), as_json, search, **overrides)
        return
    if search:
        raise VerificationError("--search is for re-checking a certificate directory")
    if candidate is None:
        raise VerificationError(
            "--candidate: required when verifying a system (or pass a certificate directory)"
        )
    if controller == "neural":
        raise VerificationError(
            "--controller neural: verify checks a given controller (lqr or a file); train one "
            "with `lyapcert certify --method neural-roa --controller neural`"
        )
    s = close_loop(resolve_system(system), controller, check_u_star=True)
    options = VerifyOptions(
        time_limit=time_limit,
        max_boxes=max_boxes,
        level_tolerance=tolerance,
        device=device,
        decay_rate=decay_rate,
        progress=not as_json and parts == 1,
        parts=parts,
        linear=True if linear is None else linear,
    ).validate()
    mapper = mapper_for(backend, address)
    cand = load_candidate(candidate, s)
    aux = load_candidate(auxiliary, s) if auxiliary is not None else None
    report = None
    if band is not None:
        from lyapcert.verify.band import check_band

        if level is not None or parts != 1:
            raise VerificationError(
                "--band: checks the band and the largest level; drop --level and --parts"
            )
        report = check_band(s, cand, band[0], band[1], options=options, auxiliary=aux)
        result = report.certified
    else:
        result = verify_candidate(
            s, cand, level=level, options=options, mapper=mapper, auxiliary=aux
        )
    if roa and not volume:
        raise VerificationError("--roa and --no-volume: choose one (--roa measures the volume)")
    if volume and result.level is not None and result.level > 0:
        from lyapcert.metric import attach_measurements

        attach_measurements(s, cand, result, not as_json, roa=roa)
    payload = result.to_dict()
    band_fields = None
    if report is not None:
        band_fields = {k: v for k, v in report.to_dict().items() if k != "certified"}
        payload["band"] = band_fields
    if out_dir is not None and result.level is not None:
        from lyapcert.certificates.store import save
        from lyapcert.verify.proof import stored_proof

        proof = stored_proof(s, cand, result)
        extra = {"band": band_fields} if band_fields else None
        path = save(out_dir, s, cand, result, proof=proof, auxiliary=aux, extra=extra)
        payload["certificate_dir"] = str(path.parent)
    if as_json:
        _emit_json(payload)
    else:
        _print_verify(s, result)
        if report is not None:
            for line in report.lines():
                out.print(line, soft_wrap=True)
        if payload.get("certificate_dir"):
            out.print(
                f"certificate: {payload['certificate_dir']} "
                f"(re-check with `lyapcert verify {payload['certificate_dir']}`)"
            )
    if not result.verified:
        raise typer.Exit(EXIT_NEGATIVE)


def _recheck(directory: Path, as_json: bool, search: bool = False, **overrides) -> None:
    from lyapcert.verify import recheck_report

    report = recheck_report(directory, search=search, **overrides)
    if as_json:
        _emit_json(report.to_dict())
    else:
        cert, result = report.certificate, report.result
        _print_verify(cert.system, result)
        mark = "[green]reproduced[/]" if report.reproduced else "[red]NOT reproduced[/]"
        out.print(f"saved verdict: {cert.verdict} ({cert.condition}); re-check: {mark}")
        took = f"re-check ({report.kind}): {result.seconds:.2f} s"
        if isinstance(report.search_seconds, (int, float)):
            took += f"; the saved search took {report.search_seconds:.2f} s"
        out.print(took)
    if not report.confirmed:
        raise typer.Exit(EXIT_NEGATIVE)


def _print_verify(s, result) -> None:
    colour = {"verified": "green", "falsified": "red", "unknown": "yellow"}[result.verdict.value]
    out.print(f"[bold]{s.name}[/]: {result.candidate}")
    out.print(
        f"[bold {colour}]{result.verdict.value.upper()}[/]  condition: {result.condition.value}"
    )
    if result.level is not None:
        out.print(
            f"level: {result.level:.6g}"
            + (
                f"   (a violation is known at {result.level_upper:.6g})"
                if result.level_upper
                else ""
            )
        )
    closed_by = (
        "closed by a chain of certificates, see the proof"
        if result.chain
        else "local quadratic certificate around x*"
    )
    out.print(f"hole: {result.hole or f'none ({closed_by})'}")
    if result.proof:
        out.print(f"proof: {result.proof}", soft_wrap=True)
    if result.proven_level is not None and not result.verified:
        out.print(f"largest level proven: {result.proven_level:.6g}")
    if result.counterexample:
        cx = result.counterexample
        pt = ", ".join(f"{n} = {v:.6g}" for n, v in zip(s.state_names, cx["point"]))
        what = "the level cannot grow past it" if result.verified else "counterexample"
        out.print(f"{what} ({cx['kind']}): {pt}  (V = {cx['V']:.6g})")
    if result.certified_volume is not None:
        label = (
            "certified volume" if result.verified else "volume of {V <= level} (not a certificate)"
        )
        out.print(f"{label}: {_volume_text(result)}", soft_wrap=True)
    if result.message:
        out.print(result.message)
    st = result.stats
    out.print(f"time: {result.seconds:.2f} s; {st.boxes:,} boxes, depth {st.max_depth}")


def _volume_text(result) -> str:
    """``6.47 = 47.15 % of the true ROA``, ``4.56 +- 0.02 (sample of 65,536 points)``, ..."""
    text = f"{result.certified_volume:.6g}"
    stderr = getattr(result, "certified_volume_stderr", None)
    if stderr:
        text += f" +- {stderr:.2g}"
    if result.roa_fraction is not None:
        return text + f" = {100 * result.roa_fraction:.2f} % of the true ROA"
    how = getattr(result, "volume_method", None)
    text += f" ({how})" if how else ""
    return text + "; share of the true ROA: not computed (--roa, or `lyapcert roa` first)"


@app.command("certify")
@handles_errors
def certify_command(
    system: SystemArg,
    method: Annotated[str, typer.Option(help="Method: see `lyapcert methods`.")] = "quadratic",
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="A method option as key=value (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file of method options (top level or a [METHOD] table)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Save the certificate directory here.")
    ] = None,
    time_limit: Annotated[
        float,
        typer.Option(
            help="Seconds for the whole verification (one deadline for all its searches)."
        ),
    ] = 120.0,
    tolerance: Annotated[
        float, typer.Option(help="Relative tolerance of the largest level.")
    ] = 1e-3,
    device: Annotated[
        str, typer.Option(help="torch device for verification: cpu or cuda.")
    ] = "cpu",
    controller: Annotated[
        str | None,
        typer.Option(
            help="Close the loop: lqr; neural (a controller trained together with V: "
            "--method neural-roa); or an ONNX / TorchScript controller file (.onnx, .pt)."
        ),
    ] = None,
    dt: Annotated[
        float | None,
        typer.Option(
            "--dt",
            help="Certify the Euler map x+ = x + dt f(x, u) instead (discrete-time conditions, "
            "successors in the box).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted training run from its checkpoint."),
    ] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Checkpoint file (default: in the cache folder, keyed by the run)."),
    ] = None,
    roa: RoaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a Lyapunov function with a method, verify it, measure its volume and (with a true
    ROA: cached, or --roa) compare it with the true ROA.

    Training methods save a checkpoint every few seconds and on Ctrl-C; rerun the same command
    with --resume to continue. Exit status 0 when verified, 1 when not, 2 on bad input (nothing
    written), 130 when interrupted.
    """
    from lyapcert.certify import certify
    from lyapcert.errors import VerificationError
    from lyapcert.methods import get_method
    from lyapcert.methods.options import build_options, parse_assignments, read_config
    from lyapcert.systems import resolve_system
    from lyapcert.verify import VerifyOptions
    from lyapcert.verify.options import check_limits

    s = resolve_system(system)
    if dt is not None:
        s = s.discretize(dt)
    m = get_method(method)
    values = read_config(config, method) if config is not None else {}
    values.update(parse_assignments(option))
    options = build_options(m.Options, values, where=f"{method} options")
    show = not as_json  # a live bar, or plain lines in a log (lyapcert.logline)
    verify_options = VerifyOptions(
        time_limit=time_limit, level_tolerance=tolerance, device=device, progress=show
    )
    try:
        check_limits(verify_options)
    except VerificationError:
        raise VerificationError(
            "--time-limit and --tolerance: expected finite numbers > 0"
        ) from None
    from lyapcert.control.closed_loop import close_for_method
    from lyapcert.errors import TrainingInterrupted
    from lyapcert.methods.checkpoint import training_checkpoint

    s, options = close_for_method(s, controller, m, options)
    ckpt = training_checkpoint(s, m, options, checkpoint or True, resume)
    if ckpt is not None and not resume and ckpt.path.exists() and not as_json:
        err.print(
            f"note: an earlier run (interrupted, or trained but not verified) left {ckpt.path}; "
            "--resume would continue it"
        )
    try:
        res = certify(
            s,
            method,
            options,
            verify_options=verify_options,
            out=out_dir,
            progress=show,
            resume=resume,
            checkpoint=ckpt.path if ckpt is not None else False,
            roa=roa,
        )
    except TrainingInterrupted as exc:
        if as_json:
            _emit_json({"error": str(exc), "error_type": type(exc).__name__})
        err.print(f"[bold yellow]interrupted:[/] {exc}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        where = (
            f"; the trained network is kept in {ckpt.path}: rerun with --resume to verify it"
            if ckpt is not None
            else ""
        )
        err.print(f"[bold yellow]interrupted[/] during verification{where}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    payload = res.to_dict()
    if as_json:
        _emit_json(payload)
    else:
        _print_verify(s, res.result)
        out.print(
            f"method: {method}; train {res.train_seconds:.2f} s, verify {res.verify_seconds:.2f} s"
        )
        if res.true_roa_volume is not None:
            out.print(f"true ROA volume: {res.true_roa_volume:.6g}")
        if res.certificate_dir:
            out.print(f"certificate: {res.certificate_dir}")
        if res.checkpoint:
            out.print(
                f"the trained network is kept in {res.checkpoint}: rerun with --resume (and a "
                "larger --time-limit) to verify it again without training"
            )
    if not res.verified:
        raise typer.Exit(EXIT_NEGATIVE)


def _split_list(values: list[str] | None) -> list[str]:
    """``--x a,b --x c`` -> ``[a, b, c]``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _split_methods(values: list[str] | None) -> list[str]:
    """``--methods`` items split at commas, where a ``key=value`` part continues the method
    before it: ``"quadratic,sos:degree=4,taylor_degree=3,neural-roa"`` is three methods."""
    specs: list[str] = []
    for part in _split_list(values):
        if "=" in part and ":" not in part and specs and ":" in specs[-1]:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


@app.command("bench")
@handles_errors
def bench_command(
    systems: Annotated[
        list[str] | None,
        typer.Option(help="Systems, comma-separated or repeated (default: vanderpol,pendulum)."),
    ] = None,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            help="Methods, comma-separated or repeated; NAME or NAME:key=value,key=value for "
            "options (default: quadratic,sos,neural-roa)."
        ),
    ] = None,
    controllers: Annotated[
        list[str] | None,
        typer.Option(
            help="Controllers for controlled systems: lqr, neural or a file (default lqr)."
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 for methods with a seed option.")] = 1,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Results folder (cells/, table.md/.csv/.json).")
    ] = Path("lyapcert-bench"),
    backend: Annotated[str, typer.Option(help="local (processes here) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Cells at once on the local backend.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads in each cell (default: the global --threads, $LYAPCERT_THREADS, "
            "or 1; 0: one per core).",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Live table of cells on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Compare methods on systems: every (system, method, controller, seed) cell is an
    independent job whose record is stored as it finishes; a rerun skips stored cells."""
    from lyapcert.bench import MethodSpec, make_cells, markdown_table, run_bench

    names = _split_list(systems) or ["vanderpol", "pendulum"]
    specs = [
        MethodSpec.parse(m) for m in _split_methods(methods) or ["quadratic", "sos", "neural-roa"]
    ]
    cells = make_cells(names, specs, _split_list(controllers) or None, seeds)
    try:
        run = run_bench(
            cells,
            out_dir,
            backend=backend,
            address=address,
            workers=workers,
            threads=threads,
            progress=progress and not as_json,
        )
    except (KeyboardInterrupt, TrainingInterrupted):
        err.print(
            f"interrupted: the finished cells are stored in {out_dir / 'cells'}; "
            "run the same command again to continue"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        _emit_json(
            {
                "out": str(run.out),
                "ran": run.ran,
                "failed": run.failed,
                "skipped": run.skipped,
                "rows": run.rows,
                "tables": {k: str(v) for k, v in run.tables.items()},
            }
        )
        return
    out.print(markdown_table(run.rows, run.out), markup=False, soft_wrap=True)
    out.print(
        f"{run.ran} cells run ({run.failed} failed), {run.skipped} already stored; "
        f"tables: {', '.join(str(p) for p in run.tables.values())}",
        soft_wrap=True,
    )
    for row in run.rows:
        for error in row["errors"]:
            err.print(f"failed cell {row['system']} / {row['method']}: {error}", markup=False)


@app.command("methods")
@handles_errors
def methods_command(as_json: JsonOpt = False) -> None:
    """List the methods and their options (name, type, default, meaning)."""
    from lyapcert.methods import METHODS
    from lyapcert.methods.options import describe

    data = {
        name: [
            {"name": n, "type": t, "default": d, "doc": doc}
            for n, t, d, doc in describe(cls.Options)
        ]
        for name, cls in METHODS.items()
    }
    if as_json:
        _emit_json({"methods": data})
        return
    for name, opts in data.items():
        table = Table(title=f"--method {name}")
        for col in ("option", "type", "default", "meaning"):
            table.add_column(col, overflow="fold")
        for o in opts:
            table.add_row(o["name"], o["type"], str(o["default"]), o["doc"])
        out.print(table)


# --------------------------------------------------------------------------- plots and animations

CertificateDirArg = Annotated[
    Path,
    typer.Argument(
        help="A certificate directory (`lyapcert certify ... --out DIR`); for `plot`, also a "
        "bench results folder (`lyapcert bench ... --out DIR`)."
    ),
]


@app.command("plot")
@handles_errors
def plot_command(
    directory: CertificateDirArg,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Picture file (.png, .pdf, .svg); default DIR/certificate.png."),
    ] = None,
    roa: Annotated[
        bool | None,
        typer.Option(
            "--roa/--no-roa",
            help="Draw the true ROA and the certified share of it. Default: when it is cached; "
            "--roa computes it if needed (slow on large systems).",
        ),
    ] = None,
    training: Annotated[
        bool,
        typer.Option(
            "--training", help="Also plot the training history (DIR/training.png, or beside --out)."
        ),
    ] = False,
    resolution: Annotated[int, typer.Option(help="Grid points per axis of V and dV/dt.")] = 150,
) -> None:
    """Plot a certificate: V's level sets, the certified region, the true ROA, the phase
    portrait and a heat map of dV/dt (2-D slices through x* above 2 states). For a bench
    results folder: the chart of % of the true ROA per system and method (DIR/bench.png)."""
    from lyapcert.errors import PlotError
    from lyapcert.viz.bench_plot import is_bench_folder, plot_bench_folder
    from lyapcert.viz.certificate_plot import FIGURE_SUFFIXES, check_output, plot_certificate_dir

    if is_bench_folder(directory):
        target = check_output(out_file or directory / "bench.png", FIGURE_SUFFIXES, "--out")
        out.print(f"wrote {plot_bench_folder(directory, target)}", soft_wrap=True)
        return
    check_output(out_file or directory / "certificate.png", FIGURE_SUFFIXES, "--out")
    if resolution < 8:
        raise PlotError(f"--resolution: expected an integer >= 8, got {resolution}")
    pictures = plot_certificate_dir(
        directory, out_file, roa=roa, training=training, resolution=resolution
    )
    if pictures.note:
        out.print(pictures.note)
    for path in pictures.written:
        out.print(f"wrote {path}", soft_wrap=True)


@app.command("animate")
@handles_errors
def animate_command(
    directory: CertificateDirArg,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Animation file: .gif, or .mp4 with ffmpeg; default DIR/animation.gif "
            "(DIR/surface.gif with --surface).",
        ),
    ] = None,
    trajectories: Annotated[
        int | None,
        typer.Option(
            help="Trajectories started inside the certified region (default 8; 1 with --surface)."
        ),
    ] = None,
    frames: Annotated[
        int | None, typer.Option(help="Frames of the animation (default 60; 120 with --surface).")
    ] = None,
    fps: Annotated[int, typer.Option(help="Frames per second.")] = 15,
    seconds: Annotated[
        float | None,
        typer.Option(help="Simulated time (default: until V has fallen to 1e-3 of the level)."),
    ] = None,
    pendulum: Annotated[
        bool | None,
        typer.Option(
            "--pendulum/--no-pendulum",
            help="Draw the pendulum's rod (default: for pendulum-like systems).",
        ),
    ] = None,
    surface: Annotated[
        bool,
        typer.Option(
            "--surface",
            help="Draw V as a 3-D surface over the first two states (others at x*) with the "
            "level as a line on it and a trajectory sliding down, the camera turning around.",
        ),
    ] = False,
    elevation: Annotated[
        float | None,
        typer.Option(help="--surface: the camera's elevation in degrees, in [-90, 90] (20)."),
    ] = None,
    turns: Annotated[
        float | None,
        typer.Option(help="--surface: full turns of the camera over the clip, >= 0 (2)."),
    ] = None,
) -> None:
    """Animate trajectories from inside the certified region settling at x*, with V(x(t))
    falling (and the pendulum swinging to rest, for pendulum-like systems); with --surface, V
    as a turning 3-D surface with a trajectory sliding down it."""
    from lyapcert.errors import PlotError

    default = directory / ("surface.gif" if surface else "animation.gif")
    if frames is None:
        frames = 120 if surface else 60
    if trajectories is None:
        trajectories = 1 if surface else 8
    least = 2 if surface else 1
    for name, value, low in (
        ("--trajectories", trajectories, 1),
        ("--frames", frames, least),
        ("--fps", fps, 1),
    ):
        if value < low:
            raise PlotError(f"{name}: expected an integer >= {low}, got {value}")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise PlotError(f"--seconds: expected a finite simulated time > 0, got {seconds}")
    if not surface and (elevation is not None or turns is not None):
        given = "--elevation" if elevation is not None else "--turns"
        raise PlotError(f"{given}: only with --surface")
    elevation = 20.0 if elevation is None else elevation
    turns = 2.0 if turns is None else turns
    if not (math.isfinite(elevation) and -90 <= elevation <= 90):
        raise PlotError(f"--elevation: expected an angle in [-90, 90] degrees, got {elevation}")
    if not (math.isfinite(turns) and turns >= 0):
        raise PlotError(f"--turns: expected a finite number of turns >= 0, got {turns}")

    from lyapcert.viz.animate import ANIMATION_SUFFIXES, animate_certificate
    from lyapcert.viz.certificate_plot import check_output, load_certificate_dir

    target = check_output(out_file or default, ANIMATION_SUFFIXES, "--out")
    cert = load_certificate_dir(directory)
    if surface:
        from lyapcert.viz.surface import animate_surface

        path = animate_surface(
            cert,
            target,
            frames,
            fps,
            elevation,
            turns,
            seconds,
            n_trajectories=trajectories,
            pendulum=pendulum,
        )
    else:
        path = animate_certificate(
            cert, target, trajectories, seconds, frames=frames, fps=fps, pendulum=pendulum
        )
    out.print(f"wrote {path} ({frames} frames)", soft_wrap=True)


@app.command("report")
@handles_errors
def report_command(
    directory: Annotated[
        Path,
        typer.Argument(
            help="A bench results folder (`lyapcert bench ... --out DIR`) or a certificate folder "
            "(`lyapcert certify ... --out DIR`)."
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML file to write; default DIR/report.html."),
    ] = None,
    animations: Annotated[
        bool,
        typer.Option(
            "--animations/--no-animations", help="Embed an animation (GIF) per certificate."
        ),
    ] = True,
    max_certificates: Annotated[
        int | None,
        typer.Option(help="At most this many certificate sections (default: all)."),
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames of each animation.")] = 24,
) -> None:
    """Write one self-contained HTML page (offline: pictures embedded, no scripts): the
    comparison table and chart of a bench folder, and per certificate its pictures, an animation
    and exactly what was proved."""
    from lyapcert.viz.report import make_report

    path = make_report(
        directory,
        out_file,
        animations=animations,
        max_certificates=max_certificates,
        frames=frames,
        progress=True,
    )
    out.print(f"wrote {path}", soft_wrap=True)


def main() -> None:  # pragma: no cover - entry point
    from lyapcert.environment import torch_build_warning

    warning = torch_build_warning()
    if warning:
        err.print(f"[yellow]{warning}[/]")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
