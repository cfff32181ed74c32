"""The command line: tables, --json fields, files written, exit statuses 0 / 1 / 2."""

import json

import pytest
from typer.testing import CliRunner

from lyapcert.cli import app
from lyapcert.systems import system_names


@pytest.fixture
def runner():
    return CliRunner()


def _json(result):
    return json.loads(result.stdout)


def test_systems_lists_the_registry(runner):
    result = runner.invoke(app, ["systems", "--json"])
    assert result.exit_code == 0
    names = [row["name"] for row in _json(result)["systems"]]
    assert names == system_names()
    table = runner.invoke(app, ["systems"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "vanderpol-mu3" in table.stdout


def test_systems_filters_by_category(runner):
    result = runner.invoke(app, ["systems", "--category", "controlled", "--json"])
    rows = _json(result)["systems"]
    assert rows and all(r["inputs"] for r in rows)


def test_show_prints_equations_and_eigenvalues(runner):
    result = runner.invoke(app, ["show", "damped_sho"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "v' = " in result.stdout and "-0.5+0.866j" in result.stdout
    data = _json(runner.invoke(app, ["show", "inverted_pendulum", "--json"]))
    assert data["states"] == ["th", "w"] and data["inputs"] == ["u"]
    assert data["locally_exponentially_stable"] is False
    assert data["params"] == {"m": 0.15, "l": 0.5, "b": 0.1, "g": 9.81}
    assert data["B"][1][0] == pytest.approx(1 / (0.15 * 0.25))
    assert data["equations"][1].startswith("w' = ")


def test_show_reads_a_file(runner):
    data = _json(runner.invoke(app, ["show", "examples/pendulum.toml", "--json"]))
    assert data["name"] == "my_pendulum"


def test_roa_json_fields_and_plot(runner, tmp_path):
    out = tmp_path / "out"
    args = ["roa", "cubic_1d", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = _json(result)
    for key in (
        "system",
        "roa_volume",
        "roa_fraction",
        "box_volume",
        "n_points",
        "counts",
        "sample",
        "criterion",
        "seconds",
        "from_cache",
        "cache_path",
        "plot",
        "locally_exponentially_stable",
    ):
        assert key in data
    assert data["roa_volume"] == pytest.approx(2.0, abs=0.01)
    assert (out / "cubic_1d-roa.png").exists()
    again = _json(runner.invoke(app, args))
    assert again["from_cache"] is True and again["roa_volume"] == data["roa_volume"]


def test_roa_text_output(runner, tmp_path):
    result = runner.invoke(
        app,
        ["roa", "vanderpol", "--resolution", "80", "--no-plot", "--no-cache"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0
    assert "true ROA area" in result.stdout and "% of the box" in result.stdout


def test_roa_exit_status_1_when_nothing_converges(runner, tmp_path):
    unstable = tmp_path / "unstable.toml"
    unstable.write_text('name = "unstable"\nstates = ["x"]\ndynamics = ["x"]\ndomain = [[-1, 1]]\n')
    result = runner.invoke(
        app,
        [
            "roa",
            str(unstable),
            "--no-plot",
            "--no-cache",
            "--convergence-radius",
            "1e-6",
            "--resolution",
            "2000",
            "--json",
        ],  # even: no grid point sits on x* itself
    )
    assert result.exit_code == 1
    assert _json(result)["counts"]["converged"] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["roa", "no_such_system"],
        ["show", "missing.toml"],
        ["roa", "vanderpol", "--resolution", "1"],
        ["roa", "vanderpol", "--horizon", "-1"],
        ["roa", "vanderpol", "--device", "tpu"],
        ["roa", "vanderpol", "--bogus-option"],
    ],
)
def test_bad_input_exits_2_and_writes_nothing(runner, tmp_path, args):
    out = tmp_path / "out"
    result = runner.invoke(app, [*args, "--out", str(out)] if args[0] == "roa" else args)
    assert result.exit_code == 2
    assert not out.exists()


def test_verify_linear_switch_reaches_the_verifier(runner):
    """`--no-linear` turns the linear (CROWN) bounds off; the default is on. Both verify the
    same quadratic on vanderpol (the switch changes bounds, not what is proven)."""
    args = ["verify", "vanderpol", "--candidate", "1.5*x1**2 - x1*x2 + x2**2", "--no-volume"]
    on = _json(runner.invoke(app, [*args, "--json"]))
    off = _json(runner.invoke(app, [*args, "--no-linear", "--json"]))
    assert on["provenance"]["settings"]["linear"] is True
    assert off["provenance"]["settings"]["linear"] is False
    assert on["verdict"] == off["verdict"] == "verified"


@pytest.mark.parametrize("columns", [80, 100, 160])
def test_systems_table_headers_stay_whole_at_any_width(runner, columns):
    result = runner.invoke(app, ["systems"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    header = next(line for line in lines if "name" in line.split())
    words = header.replace("┃", " ").split()
    for word in ("name", "time", "states", "inputs", "box", "bounds"):
        assert word in words, (word, header)
    for name in system_names():
        assert name in result.stdout


def test_methods_prints_each_option_description_whole(runner):
    import inspect

    from lyapcert.methods import METHODS

    data = _json(runner.invoke(app, ["methods", "--json"]))["methods"]
    from lyapcert import cli

    saved = cli.out._width  # COLUMNS alone is not always read (xdist workers): fix the width
    cli.out._width = 1000
    try:
        table = runner.invoke(app, ["methods"], env={"COLUMNS": "1000"})
    finally:
        cli.out._width = saved
    assert table.exit_code == 0
    assert not any(line.rstrip().endswith("…") for line in table.stdout.splitlines())
    for name, cls in METHODS.items():
        docs = {o["name"]: o["doc"] for o in data[name]}
        for o in data[name]:
            assert o["doc"] in table.stdout, (name, o["name"])
        # every line of the Options docstring's option list, continuation lines included, shows
        lines = inspect.cleandoc(cls.Options.__doc__).splitlines()
        start = next(i for i, line in enumerate(lines) if line.split(":")[0] in docs)
        for line in lines[start:]:
            text = line.split(":", 1)[1] if line.split(":")[0] in docs else line
            if text.strip():
                assert any(text.strip() in d for d in docs.values()), (name, line)
    roa = {o["name"]: o["doc"] for o in data["neural-roa"]}
    assert roa["margin"].endswith("(box units: (x - x*) / half-widths)")
