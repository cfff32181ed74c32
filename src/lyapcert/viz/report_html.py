"""The report's HTML: the page (``render_report``) with its inline CSS, header, explanation,
comparison table and failed cells, and each certificate's section with exactly what was proved
(``certificate_section``). Text from what was read and drawn (the header alone still looks at
the certificates' provenance and the results' file times). All text is escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import platform
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from lyapcert.viz.report_figures import Figure
from lyapcert.viz.report_input import CertificateItem, ReportInput, cell_title

# --------------------------------------------------------------------------- one certificate


def certificate_section(
    item: CertificateItem,
    record: dict | None = None,
    cert=None,
    share: float | None = None,
    figures: Sequence[Figure] = (),
    error: str | None = None,
) -> str:
    """The section of one certificate: ``error`` (when it could not be read or loaded), what was
    proved (when its ``record`` was read) and its figures."""
    body = f'<p class="error">{_e(error)}</p>' if error is not None else ""
    if record is not None:
        body += _proved(record, cert, item.cell, share)
    body += "".join(_figure_html(f) for f in figures)
    return _section_shell(item, body)


def _section_shell(item: CertificateItem, body: str) -> str:
    return (
        f'<section class="certificate" id="{_e(item.anchor)}">\n'
        f"<h3>{_e(item.title)}</h3>\n"
        f'<p class="path">folder: <code>{_e(item.directory)}</code>; re-check the proof with '
        f"<code>lyapcert verify {_e(item.directory)}</code></p>\n{body}</section>\n"
    )


def _figure_html(fig: Figure | None) -> str:
    if fig is None:
        return ""
    if fig.data is None:
        return f'<p class="note">{_e(fig.caption)} {_e(fig.note)}</p>\n'
    return (
        f'<figure><img src="{fig.uri()}" alt="{_e(fig.caption)}">'
        f"<figcaption>{_e(fig.caption)}</figcaption></figure>\n"
    )


# --------------------------------------------------------------------------- text helpers


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}g}" if abs(value) >= 1e5 else f"{value:.{digits}g}"


def _pm(mean, std, digits: int = 2, unit: str = "") -> str:
    if mean is None:
        return "–"
    text = f"{mean:,.{digits}f}"
    if std:
        text += f" ± {std:,.{digits}f}"
    return text + unit


# numbers in the page's text: this many significant digits (certificate.json keeps them exactly)
SIGNIFICANT = 6


def _sig(value, rounding: str | None = None) -> str:
    """A float for reading, to ``SIGNIFICANT`` significant digits (ints and other values as they
    are). ``rounding="down"`` / ``"up"`` rounds toward -inf / +inf instead of to nearest, so that
    a stated region is never larger than the proved one (a level down; a box's lower bounds up,
    its upper bounds down) where the nearest would not read back as the same float."""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    nearest = f"{value:.{SIGNIFICANT}g}"
    if rounding is None or float(nearest) == value:  # (0.3 reads back as the same float)
        return nearest
    exact = Decimal(value)
    step = Decimal(1).scaleb(exact.adjusted() - (SIGNIFICANT - 1))
    shown = exact.quantize(step, rounding=ROUND_FLOOR if rounding == "down" else ROUND_CEILING)
    return f"{float(shown):.{SIGNIFICANT}g}"


def _exact_title(value) -> str:
    """A ``title`` attribute with the float's exact value (shown on hover)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return f' title="exact: {float(value)!r}"'


def _plain(value) -> str:
    """A JSON-like value for reading: floats by ``_sig``, strings bare at the top level."""
    if isinstance(value, str):
        return value
    return _plain_nested(value)


def _plain_nested(value) -> str:
    if isinstance(value, float):
        return _sig(value)
    if isinstance(value, Mapping):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))}: {_plain_nested(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain_nested(v) for v in value) + "]"
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


_FLOAT_LITERAL = re.compile(r"(?<![\w.])\d+\.\d+(?:[eE][-+]?\d+)?|(?<![\w.])\d+[eE][-+]?\d+")


def _rounded_expression(text) -> str:
    """An expression's float literals to ``SIGNIFICANT`` digits (for reading only)."""
    return _FLOAT_LITERAL.sub(lambda m: _sig(float(m.group())), str(text))


def _matrix(rows) -> str:
    try:
        return "\n".join("[" + ", ".join(_sig(v) for v in row) + "]" for row in rows)
    except TypeError:
        return str(rows)


def _when(seconds) -> str | None:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _dl(items: Sequence[tuple[str, str]], raw: bool = False) -> str:
    """A definition list; values are escaped unless ``raw``."""
    out = ['<dl class="facts">']
    for key, value in items:
        out.append(f"<dt>{_e(key)}</dt><dd>{value if raw else _e(value)}</dd>")
    out.append("</dl>\n")
    return "".join(out)


def _kv(mapping) -> str:
    if not isinstance(mapping, Mapping) or not mapping:
        return "–"
    return ", ".join(f"{k} = {_plain(v)}" for k, v in mapping.items())


# --------------------------------------------------------------------------- what was proved


def _proved(record: dict, cert, cell: dict | None, share: float | None) -> str:
    """The exact statement and the numbers of the proof, read from ``certificate.json``."""
    verdict = str(record.get("verdict") or "unknown")
    condition = str(record.get("condition") or "none")
    level = record.get("level")
    inner = record.get("inner_level")
    hole = record.get("hole")
    local = record.get("local") if isinstance(record.get("local"), dict) else None
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    system = cert.system if cert is not None else None
    discrete = bool(system is not None and system.is_discrete)
    names = list(system.state_names) if system is not None else []
    x = "(" + ", ".join(names) + ")" if names else "x"
    if system is not None:
        box = " × ".join(
            f"{n} ∈ [{_sig(float(lo), 'up')}, {_sig(float(hi), 'down')}]"
            for n, lo, hi in zip(names, system.domain.lower, system.domain.upper)
        )
        x_star = "(" + ", ".join(_sig(float(v)) for v in system.equilibrium) + ")"
    else:
        box, x_star = "the system's box", "x*"
    region = f"R = {{ {x} : {box}, V(x) ≤ {_sig(level, 'down')} }}"
    closed = " with its controller u = k(x)" if record.get("controller") else ""
    decrease = (
        f"V(x+) − V(x) < −k·V(x) with k = {_sig(settings.get('decay_rate', 0.0), 'down')} "
        "(x+ the next state)"
        if discrete
        else f"dV/dt = ∇V(x)·f(x{', k(x)' if closed else ''}) < 0"
    )
    statement: list[str] = []
    chain = record.get("chain") if isinstance(record.get("chain"), list) else None
    link = chain[-1] if chain else {}
    if verdict == "verified" and condition == "asymptotic" and hole is None and chain:
        statement.append(
            f'<p class="proved"><strong>Proven</strong> for the system{_e(closed)}, through a '
            f"chain of certificates: the auxiliary certificate W = {_e(link.get('auxiliary'))} is "
            f"verified up to W ≤ {_e(_sig(link.get('auxiliary_level'), 'down'))} (its own no-hole "
            "proof), so that set is a region of attraction; V ≥ "
            f"{_e(_sig(inner))} on the box outside it; {_e(decrease)} on "
            f"<code>{_e(_sig(inner))} ≤ V ≤ {_e(_sig(level, 'down'))}</code> outside it; and "
            f"<code>{_e(region)}</code> lies in the box and contains x* = {_e(x_star)}. So every "
            "trajectory that starts in R converges to x*: R is a certified region of attraction "
            "(asymptotic stability, no hole), although V need not vanish at x*.</p>"
        )
    elif verdict == "verified" and condition == "asymptotic" and hole is None:
        statement.append(
            f'<p class="proved"><strong>Proven</strong> for the system{_e(closed)}: the region '
            f"<code>{_e(region)}</code> lies in the box"
            + (" and its successors stay in the box" if discrete else "")
            + f"; {_e(decrease)} on the band <code>{_e(_sig(inner))} ≤ V ≤ {_e(_sig(level, 'down'))}"
            "</code>; and the inner set <code>{V ≤ "
            + _e(_sig(inner))
            + "}</code> lies inside the region of the local quadratic certificate around "
            f"x* = {_e(x_star)}. So every trajectory that starts in R stays in R and converges to "
            "x*: R is a certified region of attraction (asymptotic stability, no hole).</p>"
        )
    elif verdict == "verified":
        what = {
            "nonstrict": "only a non-strict decrease (V never increases: Lyapunov stability, "
            "not convergence)",
        }.get(condition, f"condition {condition!r}")
        statement.append(
            f'<p class="partial"><strong>Proven with limits</strong>: on <code>{_e(region)}</code>'
            f" the verifier proved {_e(what)}"
            + (f"; hole: {_e(hole)}" if hole else "")
            + ". This is not a certified region of attraction.</p>"
        )
    else:
        statement.append(
            f'<p class="unproven"><strong>Not proven</strong>: verdict {_e(verdict.upper())}. '
            f"The level {_e(_sig(level, 'down'))} is the one that was checked; no region is certified."
            + (f" Hole: {_e(hole)}." if hole else "")
            + "</p>"
        )
    if cell is not None and cell.get("message"):
        statement.append(f'<p class="note">verifier: {_e(cell["message"])}</p>')

    facts: list[tuple[str, str]] = [
        ("verdict", _e(verdict.upper())),
        ("condition", _e(condition)),
        (
            "level",
            f"<code{_exact_title(level)}>{_e(_sig(level, 'down'))}</code> (numbers to "
            f"{SIGNIFICANT} significant digits, levels rounded down; certificate.json holds them "
            "exactly)",
        ),
        (
            "inner level c0",
            f"<code{_exact_title(inner)}>{_e(_sig(inner))}</code>" if inner is not None else "–",
        ),
        ("hole", _e(hole) if hole else "none (covered by the local certificate)"),
        ("region", f"<code>{_e(region)}</code>"),
        ("box", _e(box)),
        ("equilibrium x*", f"<code>{_e(x_star)}</code>"),
    ]
    if system is not None:
        kind = f"discrete time, dt = {system.dt:g}" if discrete else "continuous time"
        equations = system.equation_strings() or ["(defined in Python)"]
        facts.insert(
            0,
            (
                "system",
                f"<code>{_e(system.name)}</code> ({_e(kind)})<pre>{_e(chr(10).join(equations))}</pre>",
            ),
        )
    facts.append(("candidate V", _candidate_html(record.get("candidate"))))
    if local:
        facts.append(
            (
                "local certificate",
                "V<sub>q</sub>(x) = (x − x*)ᵀ P (x − x*) ≤ c<sub>q</sub> = "
                f"<code>{_e(_sig(local.get('level'), 'down'))}</code>, radius "
                f"{_e(_num(local.get('radius')))}, remainder bound M = "
                f"{_e(_num(local.get('remainder_M')))}, decay {_e(_num(local.get('decay')))}; "
                f"P =<pre>{_e(_matrix(local.get('P') or []))}</pre>",
            )
        )
    if record.get("controller") is not None:
        facts.append(("controller", _controller_html(record["controller"])))
    if chain:
        facts.append(
            (
                "chain",
                _e(
                    f"auxiliary W: {link.get('auxiliary')}, verified level "
                    f"{_sig(link.get('auxiliary_level'), 'down')}; proof of W: "
                    f"{link.get('auxiliary_proof')}"
                ),
            )
        )
    if isinstance(record.get("band"), dict):
        facts.append(("band claim", _band_html(record["band"])))
    if cell is None and record.get("certified_volume") is not None:
        cell = record  # a certificate saved by certify carries its volumes itself
    if cell is not None:
        if cell.get("true_roa_volume") is None and cell.get("volume_method"):
            # measured without a true ROA (exact ellipsoid, or a sample of the box)
            stderr = cell.get("certified_volume_stderr")
            volume = (
                f"{_num(cell.get('certified_volume'))}"
                + (f" ± {_num(stderr, 2)}" if stderr else "")
                + f" ({cell['volume_method']})"
                + (
                    f"; {100 * share:.2f} % of the cached true ROA"
                    if share is not None
                    else "; no true ROA to compare with"
                )
            )
        else:
            volume = (
                f"{_num(cell.get('certified_volume'))} (true ROA volume "
                f"{_num(cell.get('true_roa_volume'))})"
                + (
                    f" = {100 * cell['roa_fraction']:.2f} % of the true ROA"
                    if isinstance(cell.get("roa_fraction"), (int, float))
                    else ""
                )
            )
        facts.append(("certified volume", _e(volume)))
        facts.append(("boxes", _e(_num(cell.get("boxes"), 8))))
    elif share is not None:
        facts.append(("% of the true ROA", _e(f"{100 * share:.2f} % (cached true ROA)")))
    facts += [
        ("method", _e(record.get("method") or "–")),
        ("method options", _e(_kv(record.get("options")))),
        ("verifier settings", _e(_kv(settings))),
        (
            "time",
            _e(
                f"train {_num(record.get('train_seconds'), 3)} s, verify "
                f"{_num(record.get('verify_seconds'), 3)} s"
            ),
        ),
        ("provenance", _e(_kv(record.get("provenance")))),
    ]
    return "<h4>What was proved</h4>\n" + "".join(statement) + "\n" + _dl(facts, raw=True)


def _band_html(band: Mapping) -> str:
    """A published band claim as checked (``verify --band``): one line per part."""
    d, b, h = (band.get(k) or {} for k in ("decrease", "box", "hole"))
    c1, c2 = _sig(band.get("c1")), _sig(band.get("c2"))
    lines = [f"decrease on {c1} ≤ V ≤ {c2}: {d.get('status', '–')}"]
    if d.get("status") == "violated":
        lines[-1] += (
            f" at {_plain(d.get('point'))} (V = {_num(d.get('V'))}, value in "
            f"{_plain(d.get('value'))})"
        )
    faces = b.get("min_v_on_faces") or [None, None]
    lines.append(
        f"{{V ≤ {c2}}} in the box: {b.get('status', '–')} (min V on the faces in "
        f"[{_num(faces[0])}, {_num(faces[1])}])"
    )
    hole = f"hole {{V < {c1}}}: {h.get('status', '–')}"
    if h.get("status") == "closed":
        hole += f" by {h.get('by')}"
    elif h.get("volume") is not None:
        hole += f" (volume outside a proven region {_num(h.get('volume'))} ± {_num(h.get('stderr'), 2)})"
    lines.append(hole)
    return "<br>".join(_e(line) for line in lines)


def _candidate_html(candidate) -> str:
    if not isinstance(candidate, dict):
        return "–"
    family = candidate.get("family")
    if family == "quadratic":
        return (
            "quadratic: V(x) = (x − x*)ᵀ P (x − x*), P =<pre>"
            + _e(_matrix(candidate.get("P") or []))
            + "</pre>"
        )
    if family == "expression":
        return (
            'expression (coefficients to 6 significant digits):<pre class="wrap">'
            f"{_e(_rounded_expression(candidate.get('expression')))}</pre>"
        )
    if family == "network":
        arch = _plain(candidate.get("architecture"))
        return (
            f"network; weights <code>{_e(candidate.get('weights'))}</code>, sha256 "
            f"<code>{_e(candidate.get('weights_sha256'))}</code>; architecture"
            f'<pre class="wrap">{_e(arch)}</pre>'
        )
    return _e(_plain(candidate))


def _controller_html(controller) -> str:
    if not isinstance(controller, dict):
        return _e(controller)
    family = controller.get("family")
    if family == "linear":
        bounds = ""
        if controller.get("lower") is not None:
            bounds = (
                f", clamped to [{_plain(controller.get('lower'))}, "
                f"{_plain(controller.get('upper'))}]"
            )
        return (
            f"linear: u = u* − K (x − x*), u* = {_e(_plain(controller.get('u_star')))}{_e(bounds)}, K ="
            f"<pre>{_e(_matrix(controller.get('K') or []))}</pre>"
        )
    rest = {k: v for k, v in controller.items() if k != "family"}
    return f"{_e(family)}: <code>{_e(_plain(rest))}</code>"


# --------------------------------------------------------------------------- rendering


CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
  max-width: 1180px; margin: 0 auto; padding: 1.5em 2em 4em; background: #fff; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin-top: 2.2em; } h4 { margin: 1em 0 .4em; }
.meta { color: #555; font-size: .93em; } code, pre { font-family: Menlo, Consolas, monospace;
  font-size: .88em; } pre { background: #f6f6f4; padding: .4em .6em; margin: .3em 0;
  overflow-x: auto; } pre.wrap { white-space: pre-wrap; word-break: break-all; }
table.comparison { border-collapse: collapse; width: 100%; font-size: .88em; margin: 1em 0; }
table.comparison th, table.comparison td { border: 1px solid #d8d8d8; padding: .3em .5em;
  vertical-align: top; text-align: left; } table.comparison th { background: #f1f1ee; }
td.num { text-align: right; white-space: nowrap; } tr.failed td { background: #fdecea; }
tr.unverified td { background: #fff7e0; } .error { color: #a11; } .note { color: #666; }
.published { color: #555; font-style: italic; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
dl.facts { display: grid; grid-template-columns: 11em 1fr; gap: .25em 1em; font-size: .92em; }
dl.facts dt { font-weight: 600; color: #333; } dl.facts dd { margin: 0; min-width: 0; }
p.proved { border-left: 4px solid #2b7a3d; padding-left: .8em; }
p.partial { border-left: 4px solid #c98a00; padding-left: .8em; }
p.unproven { border-left: 4px solid #a11; padding-left: .8em; }
details pre { max-height: 24em; } footer { margin-top: 3em; color: #777; font-size: .85em; }
"""


def render_report(
    report: ReportInput, chart: Figure | None, sections: list[str], hidden: int = 0
) -> str:
    """The page's HTML from what was read and the rendered certificate sections."""
    from lyapcert import __version__

    made = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if report.kind == "bench":
        title = "lyapcert comparison: " + ", ".join(_unique(r["system"] for r in report.rows))
    else:
        title = "lyapcert certificate: " + report.certificates[0].title
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n",
        f"<h1>{_e(title)}</h1>\n",
        _header_meta(report),
        f'<p class="meta">Report made {_e(made)} by lyapcert {_e(__version__)} (Python '
        f"{_e(platform.python_version())}) from <code>{_e(report.root)}</code>.</p>\n</header>\n",
        _intro(report),
    ]
    if report.kind == "bench":
        parts.append(_comparison(report, chart))
        parts.append(_failures(report))
    parts.append(
        '<h2 id="certificates">Certificates</h2>\n'
        if report.kind == "bench"
        else "<h2>The certificate</h2>\n"
    )
    if report.kind == "bench" and not report.certificates:
        parts.append('<p class="note">No cell finished with a certificate.</p>\n')
    parts.extend(sections)
    if hidden > 0:
        parts.append(
            f'<p class="note">{hidden} more certificate(s) not shown (--max-certificates); their '
            "folders are listed in the table's cells.</p>\n"
        )
    parts.append(
        "<footer>Self-contained page: the pictures are embedded, nothing is loaded from the "
        "network. Every certificate folder named above can be re-checked with <code>lyapcert "
        "verify DIR</code>.</footer>\n</body>\n</html>\n"
    )
    return "".join(parts)


def _unique(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if v is not None and str(v) not in out:
            out.append(str(v))
    return out


def _versions(records: list[Mapping]) -> str:
    """The provenance versions of the certificates (``lyapcert 0.1.0, torch ...``); differing
    versions are all listed."""
    seen: dict[str, list[str]] = {}
    for record in records:
        prov = record.get("provenance") if isinstance(record, Mapping) else None
        if not isinstance(prov, Mapping):
            continue
        for key, value in prov.items():
            if key.endswith(("fingerprint", "hash")) or not isinstance(value, str):
                continue
            values = seen.setdefault(key, [])
            if value not in values:
                values.append(value)
    return ", ".join(f"{k} {' / '.join(v)}" for k, v in seen.items())


def _header_meta(report: ReportInput) -> str:
    if report.kind == "certificate":
        record = report.certificate or {}
        versions = _versions([record]) or "not recorded"
        verdict = str(record.get("verdict") or "unknown").upper()
        return (
            f'<p class="meta">One certificate: method <strong>{_e(record.get("method") or "–")}'
            f"</strong>, verdict <strong>{_e(verdict)}</strong>, level "
            f"{_e(_num(record.get('level'), 6))}. Made with {_e(versions)}.</p>\n"
        )
    records = report.records
    cells = (report.manifest or {}).get("cells") or records
    systems = _unique(c.get("system") for c in cells) or _unique(r["system"] for r in report.rows)
    methods = _unique(c.get("method_label") or c.get("method") for c in cells) or _unique(
        r["method"] for r in report.rows
    )
    controllers = _unique(c.get("controller") for c in cells)
    seeds = _unique(c.get("seed") for c in cells)
    starts = [r["started"] for r in records if isinstance(r.get("started"), (int, float))]
    ends = [
        r.get("finished") or (r["started"] + r.get("seconds", 0.0))
        for r in records
        if isinstance(r.get("started"), (int, float))
    ]
    if starts:
        when = f"Runs from {_when(min(starts))} to {_when(max(ends))}."
    else:
        stamp = max(
            (
                p.stat().st_mtime
                for p in (report.root / "table.json", report.root / "bench.json")
                if p.exists()
            ),
            default=None,
        )
        when = f"Results written {_when(stamp)}." if stamp else "When: not recorded."
    certs = []
    for item in report.certificates:
        try:
            certs.append(json.loads((item.directory / "certificate.json").read_text()))
        except (OSError, ValueError):
            continue
    versions = _versions(certs) or "not recorded"
    failed = len(report.failed)
    backend = (report.manifest or {}).get("backend")
    return (
        f'<p class="meta">Compared: systems {_e(", ".join(systems))}; methods '
        f"{_e(', '.join(methods))}"
        + (f"; controllers {_e(', '.join(controllers))}" if controllers else "")
        + (f"; seeds {_e(', '.join(seeds))}" if seeds else "")
        + f". {len(cells)} cell(s), {len(records)} finished"
        + (f', <span class="error">{failed} failed</span>' if failed else "")
        + (f", backend {_e(backend)}" if backend else "")
        + f". {_e(when)} Certificates made with {_e(versions)}.</p>\n"
    )


def _intro(report: ReportInput) -> str:
    text = [
        "<h2>What the numbers mean</h2>\n",
        "<p>A <strong>Lyapunov certificate</strong> is a function V that is positive away from "
        "the equilibrium x* and decreases along every trajectory of the system (for a controlled "
        "system: of the closed loop with its controller). lyapcert's verifier proves this with "
        "sound float64 bounds, rounded outward, and branch and bound over the box: V decreases on "
        "the sublevel set {x in box : V(x) ≤ level}, the set lies inside the box, and a local "
        "certificate around x* covers the neighbourhood that branch and bound cannot, so no hole "
        "is left. A trajectory that starts in that set stays in it and converges to x*: the set "
        "is a <strong>certified region of attraction</strong> (ROA). A method only proposes V; "
        "every verdict below comes from the same verifier. A verdict other than VERIFIED, or a "
        "hole, means no region is certified.</p>\n",
        "<p><strong>% of the true ROA</strong> compares the certified set with the true ROA, "
        "which lyapcert estimates by simulation: trajectories are integrated from a dense sample "
        "of the box (a grid up to 3 states, a Sobol sample above) and each point is labelled "
        "converged or not. The percentage is the share of the converged sample points that lie "
        "in the certified set. The certified set is proven; the true ROA it is measured against "
        "is an estimate (limited by the sample, the horizon and the box), not a proof.",
    ]
    if report.kind == "bench":
        text.append(
            " In the table a run that did not verify counts as 0 % and volume 0; means and "
            "spreads are over seeds. Published numbers, where shown, are quoted from the "
            "literature for the same benchmark: they were not produced by these runs, and a "
            "published volume is in the units of its own box.</p>\n"
        )
    else:
        text.append(
            " This page shows the share only when the true ROA is cached on this machine "
            "(<code>lyapcert roa</code> or <code>lyapcert certify</code> computed it).</p>\n"
        )
    return "".join(text)


def _published(row: Mapping) -> str:
    value = row.get("published")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    from lyapcert.bench.anchors import anchor_for

    kind = row.get("published_kind")
    text = f"{value:g} % of true ROA" if kind == "percent" else f"volume {value:,.1f}"
    anchor = anchor_for(row["system"], str(row["method"]).partition(":")[0])
    source = f" ({anchor.source})" if anchor is not None and anchor.value == value else ""
    return f'<span class="published">{_e(text + source)}</span>'


def _comparison(report: ReportInput, chart: Figure | None) -> str:
    anchors = {}
    for item in report.certificates:
        if item.cell is not None:
            key = (
                item.cell.get("system"),
                item.cell.get("method_label") or item.cell.get("method"),
                item.cell.get("controller"),
            )
            anchors.setdefault(key, []).append(item)
    head = (
        "<tr><th>system</th><th>method</th><th>controller</th><th>runs</th><th>verdict</th>"
        "<th>hole</th><th>certified volume</th><th>% of true ROA (ours)</th><th>published</th>"
        "<th>train s</th><th>verify s</th><th>boxes</th><th>certificates / errors</th></tr>"
    )
    body = []
    for row in report.rows:
        verdict = str(row.get("verdict") or "–")
        errors = row.get("errors") or []
        css = (
            "failed"
            if errors or "failed" in verdict
            else ("" if verdict == "verified" else "unverified")
        )
        links = [
            f'<a href="#{_e(i.anchor)}">{_e("seed " + str(i.cell.get("seed")) if i.cell.get("seed") is not None else "certificate")}</a>'
            for i in anchors.get((row["system"], row["method"], row.get("controller")), [])
        ]
        notes = " ".join(links)
        for error in errors:
            notes += f'<div class="error">failed: {_e(error)}</div>'
        body.append(
            f'<tr class="{css}">'
            f"<td><code>{_e(row['system'])}</code></td><td>{_e(row['method'])}</td>"
            f'<td>{_e(row.get("controller") or "–")}</td><td class="num">{_e(row.get("runs", "–"))}</td>'
            f"<td>{_e(verdict)}</td><td>{_e(row.get('hole') or '–')}</td>"
            f'<td class="num">{_e(_pm(row.get("certified_volume_mean"), row.get("certified_volume_std")))}</td>'
            f'<td class="num">{_e(_pm(row.get("roa_percent_mean"), row.get("roa_percent_std"), unit=" %"))}</td>'
            f"<td>{_published(row)}</td>"
            f'<td class="num">{_e(_pm(row.get("train_seconds_mean"), None, 1))}</td>'
            f'<td class="num">{_e(_pm(row.get("verify_seconds_mean"), None, 1))}</td>'
            f'<td class="num">{_e(_pm(row.get("boxes_mean"), None, 0))}</td>'
            f"<td>{notes or '–'}</td></tr>"
        )
    table = (
        '<h2 id="comparison">The comparison</h2>\n'
        '<table class="comparison">\n<thead>'
        + head
        + "</thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>\n"
        '<p class="note">One row per system, method and controller (mean ± standard deviation '
        "over seeds). Red rows: a cell failed (its error is in the last column); yellow: it ran "
        "but did not verify everywhere.</p>\n"
    )
    return table + (_figure_html(chart) if chart is not None else "")


def _failures(report: ReportInput) -> str:
    failed = report.failed
    if not failed:
        return ""
    out = ['<h2 id="failures">Failed cells</h2>\n']
    for record in failed:
        out.append(
            f"<h3>{_e(cell_title(record))}</h3>\n"
            f'<p class="error">{_e(record.get("error") or "failed (no error recorded)")}</p>\n'
        )
        if record.get("traceback"):
            out.append(
                f"<details><summary>traceback</summary><pre>{_e(record['traceback'])}</pre>"
                "</details>\n"
            )
    return "".join(out)
