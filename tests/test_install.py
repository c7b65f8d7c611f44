"""A wheel user's paths: build the wheel, install it in a fresh virtual environment, use it outside the checkout.

The wheel is built from this checkout (``pip wheel --no-build-isolation``) and installed, with the ``report``
extra, into a new virtual environment, pinned to the versions of the development environment (pip takes them
from its cache, or from the registry).  Then, from a directory outside the checkout, with no Jupyter kernel
registered and no access to the checkout's files, the installed ``carecall-eval`` runs simulate, validate,
evaluate, report, export and compare, and the shipped sample loads.  Nothing here imports the checkout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.install


def _run(cmd, *, cwd, env, timeout=900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {out.returncode}\nstdout:\n{out.stdout[-4000:]}\n"
                    f"stderr:\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, ROOT],
         cwd=ROOT, env=os.environ.copy())
    (whl,) = dist.glob("carecall_eval-*.whl")
    return whl


def test_wheel_carries_notebooks_template_sample_and_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for nb in ("quarterly_report", "compare", "research_walkthrough"):
        assert f"carecall_eval/notebooks/{nb}.py" in names
    assert "carecall_eval/report/templates/carecall_report.html.j2" in names
    assert "carecall_eval/py.typed" in names
    for table in ("activity.parquet", "call_cases.parquet", "operator.toml", "truth.json"):
        assert f"carecall_eval/_sample_data/{table}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "Project-URL: Documentation" in meta
    assert not any("__pycache__" in n or n.startswith(("tests/", "benchmarks/", "data/")) for n in names)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh virtual environment with the wheel and its report extra; the environment to run it in."""
    base = tmp_path_factory.mktemp("wheel_user")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    py = env_dir / "bin" / "python"
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    pins = [ln for ln in freeze.splitlines() if "==" in ln and not ln.lower().startswith(("carecall", "-e"))]
    constraints = base / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}", PIP_DISABLE_PIP_VERSION_CHECK="1",
               JUPYTER_DATA_DIR=str(base / "jupyter"), JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
               MPLCONFIGDIR=str(base / "mpl"), HOME=str(base / "home"))
    (base / "home").mkdir()
    pip_env = dict(env, HOME=os.environ.get("HOME", str(base / "home")))   # pip's cache lives in the real home
    _run([py, "-m", "pip", "install", "--quiet", "--constraint", constraints, f"{wheel}[report]"], cwd=base,
         env=pip_env, timeout=1800)
    work = base / "work"
    work.mkdir()
    return {"py": py, "cli": env_dir / "bin" / "carecall-eval", "env": env, "work": work}


def test_installed_package_is_the_wheel_and_ships_the_sample(installed):
    code = ("import carecall_eval, json\n"
            "from carecall_eval import datasets\n"
            "from carecall_eval.report.render import notebook_path\n"
            "ds = datasets.load_sample()\n"
            "print(json.dumps({'file': carecall_eval.__file__, 'sample': str(datasets.sample_path()),\n"
            "  'notebook': str(notebook_path()), 'customers': len(ds.table('customers')),\n"
            "  'truth': datasets.sample_truth()['params']['seed']}))\n")
    got = json.loads(_run([installed["py"], "-c", code], cwd=installed["work"], env=installed["env"]).stdout)
    for key in ("file", "sample", "notebook"):
        assert str(ROOT) not in got[key] and "site-packages" in got[key], got
    assert got["customers"] == 4000 and got["truth"] == 20261122


def test_wheel_user_runs_every_command_outside_the_checkout(installed):
    cli, env, work = installed["cli"], installed["env"], installed["work"]
    sample = _run([installed["py"], "-c", "from carecall_eval import datasets; print(datasets.sample_path())"],
                  cwd=work, env=env).stdout.strip()

    _run([cli, "simulate", "sim", "--customers", "3000", "--seed", "11", "--operator", "OtherBet"], cwd=work, env=env)
    assert (work / "sim" / "truth.json").is_file()
    _run([cli, "validate", "sim"], cwd=work, env=env)
    _run([cli, "evaluate", "sim", "--out", "metrics.json", "--quiet"], cwd=work, env=env)
    rows = json.loads((work / "metrics.json").read_text())["metrics"]
    assert any(r["metric"] == "spending.matched_change" for r in rows)

    rep = _run([cli, "report", "--data", "sim", "--quarter", "latest", "--out", "reports", "--fast", "--quiet"],
               cwd=work, env=env)
    (html,) = (work / "reports" / "OtherBet").glob("*/report.html")
    assert "OtherBet" in html.read_text(encoding="utf-8")
    assert (html.parent / "metrics.json").is_file() and (html.parent / "metrics.csv").is_file()
    assert "Report:" in rep.stdout

    _run([cli, "export", "--data", "sim", "--out", "bundle_other", "--no-placebo", "--quiet"], cwd=work, env=env)
    _run([cli, "export", "--data", sample, "--out", "bundle_sample", "--no-placebo", "--quiet"], cwd=work, env=env)
    _run([cli, "compare", "bundle_sample", "bundle_other", "--out", "comparison"], cwd=work, env=env)
    page = (work / "comparison" / "compare.html").read_text(encoding="utf-8")
    assert "SimSpel" in page and "OtherBet" in page
    assert not list(work.rglob("*.carecall-partial-*"))


def test_report_says_it_runs_in_this_interpreter_without_a_kernel(installed):
    """No kernel registered in the fresh environment: the notebook runs in the installed interpreter, said once."""
    code = ("from carecall_eval.report.render import kernel\n"
            "import jupyter_client.kernelspec as ks, sys\n"
            "msgs = []\n"
            "with kernel(None, msgs.append) as name:\n"
            "    spec = ks.KernelSpecManager().get_kernel_spec(name)\n"
            "print(name, spec.argv[0] == sys.executable, len(msgs), 'not registered' in msgs[0])\n")
    out = _run([installed["py"], "-c", code], cwd=installed["work"], env=installed["env"]).stdout.split()
    assert out == ["carecall-eval-here", "True", "1", "True"]
