"""Every ```python block of README.md runs verbatim.

Each block is executed as written (``exec`` in a fresh namespace, tracebacks pointing at the
README's own line numbers) in an empty working folder, with the true-ROA cache in a private
folder (``conftest.py``). A block may only rely on what its section's shell commands made before
it; those files are made here first, per section (the heading above the block):

* "Quick start: Python": nothing.
* "The verifier": ``k.onnx`` and ``V.onnx``, the published two-stage controller and ``V`` of
  ``inverted_pendulum-wide`` (``tests/data/twostage``), copied into the working folder.
* "Plots and animations": ``cert/``, which the section's shell example makes with
  ``lyapcert certify vanderpol --method neural-roa --out cert/``; here with the quadratic method
  (seconds instead of minutes; any certificate folder does, and ``plot_training`` then returns
  ``None``: no history). ``rows`` (the bench rows the block's comment describes) is preset to one
  row; a definition in the block itself overrides it.

A new block in a section not listed runs with nothing prepared: it must be self-contained, or get
its files here (and be described above). Blocks that take more than a few seconds are ``slow``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TWOSTAGE = Path(__file__).parent / "data" / "twostage"


def python_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(heading, first line number, code)`` of every ```python block (headings inside fenced
    blocks are not headings)."""
    blocks, heading, fence, start, code = [], "", None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif line.strip().startswith("```"):
                fence = line.strip()[3:].strip()
                start, code = number + 1, []
        elif line.strip() == "```":
            if fence == "python":
                blocks.append((heading, start, "\n".join(code) + "\n"))
            fence = None
        else:
            code.append(line)
    return blocks


BLOCKS = python_blocks(README.read_text())


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def _prepare_verifier(folder: Path, namespace: dict) -> None:
    shutil.copy(TWOSTAGE / "pendulum_bigtorque_seed0_controller.onnx", folder / "k.onnx")
    shutil.copy(TWOSTAGE / "pendulum_bigtorque_seed0_V.onnx", folder / "V.onnx")


def _prepare_plots(folder: Path, namespace: dict) -> None:
    import lyapcert

    res = lyapcert.certify("vanderpol", "quadratic", out="cert/", roa=False)
    assert res.verified and (folder / "cert" / "certificate.json").exists()
    namespace["rows"] = [
        {
            "system": "vanderpol",
            "method": "quadratic",
            "controller": None,
            "roa_fraction_mean": 0.59,
            "roa_fraction_std": 0.0,
            "verdict": "verified",
        }
    ]


def _check_quick_start(folder: Path, namespace: dict) -> None:
    assert namespace["res"].verified and namespace["res"].roa_fraction is not None
    assert namespace["est"].volume > 0


def _check_verifier(folder: Path, namespace: dict) -> None:
    assert namespace["result"].verified


def _check_plots(folder: Path, namespace: dict) -> None:
    for name in ("cert.png", "bench.png", "cert.gif", "surface.gif"):
        assert (folder / name).stat().st_size > 0, name


# heading -> (prepare, check, slow)
SECTIONS = {
    "Quick start: Python": (None, _check_quick_start, False),
    "The verifier": (_prepare_verifier, _check_verifier, True),
    "Plots and animations": (_prepare_plots, _check_plots, True),
}


def _params():
    seen: dict[str, int] = {}
    for heading, line, code in BLOCKS:
        seen[heading] = seen.get(heading, 0) + 1
        ident = _slug(heading) + (f"-{seen[heading]}" if seen[heading] > 1 else "")
        slow = SECTIONS.get(heading, (None, None, False))[2]
        marks = [pytest.mark.slow] if slow else []
        yield pytest.param(heading, line, code, id=ident, marks=marks)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 3
    assert {h for h, _, _ in BLOCKS} >= set(SECTIONS)


@pytest.mark.parametrize(("heading", "line", "code"), list(_params()))
def test_readme_python_block_runs_verbatim(heading, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepare, check, _ = SECTIONS.get(heading, (None, None, False))
    namespace: dict = {"__name__": "__readme__"}
    if prepare is not None:
        prepare(tmp_path, namespace)
    # padded so that a traceback names the README's own line
    compiled = compile("\n" * (line - 1) + code, str(README), "exec")
    exec(compiled, namespace)
    if check is not None:
        check(tmp_path, namespace)
