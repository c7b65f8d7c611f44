"""Data sets that ship with carecall_eval, as ``lifelines.datasets`` ships its own.

The sample is a simulated operator ("SimSpel": 4,000 customers over 2024-2025, seed 20261122) in the data
contract, with its ``truth.json`` (the true effects the simulator built in).  It is the repository's
``data/sample/`` folder, shipped inside the wheel, so examples and tests run without a checkout.

Regenerate it byte for byte with ``make sample`` (``carecall-eval simulate data/sample --customers 4000
--seed 20261122``).  Never write into the returned folder: in an installed package it is the package's
own copy.

Examples
--------
>>> from carecall_eval import datasets
>>> path = datasets.sample_path()
>>> sorted(p.name for p in path.glob("*.toml"))
['operator.toml']
>>> round(datasets.sample_truth()["realised"]["realised_att_theoretical_loss"]["post_84d"], 3)
-0.132
>>> ds = datasets.load_sample()          # validated, as carecall_eval.load()   # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["sample_path", "load_sample", "sample_truth", "SAMPLE_CUSTOMERS", "SAMPLE_SEED"]

#: Size and seed the sample was simulated with (``make sample``).
SAMPLE_CUSTOMERS = 4000
SAMPLE_SEED = 20261122

_PACKAGE = "carecall_eval._sample_data"


def sample_path() -> Path:
    """The folder of the sample operator's data (Parquet tables, ``operator.toml``, ``truth.json``).

    Returns
    -------
    pathlib.Path
        The package's copy in an installed wheel, ``data/sample`` in a checkout.

    Raises
    ------
    FileNotFoundError
        If the sample is not there (a package built without its data; reinstall it).
    """
    from importlib import resources

    try:
        folder = Path(str(resources.files(_PACKAGE).joinpath("operator.toml"))).parent
    except (ModuleNotFoundError, TypeError, NotADirectoryError):
        # an editable install or a source tree: the folder beside the package
        folder = Path(__file__).resolve().parents[1] / "data" / "sample"
    if not (folder / "operator.toml").is_file():
        raise FileNotFoundError(f"the sample data are not installed (looked in {folder}); reinstall "
                                "carecall_eval, or in a checkout run `make sample`")
    return folder


def load_sample(**options):
    """The sample operator, opened and validated: :func:`carecall_eval.load` on :func:`sample_path`.

    Parameters
    ----------
    **options
        Passed to :func:`carecall_eval.load` (``memory_limit``, ...).

    Returns
    -------
    carecall_eval.contract.Dataset
    """
    from .contract import load

    return load(sample_path(), **options)


def sample_truth() -> dict:
    """The sample's ``truth.json``: simulator settings, realised effects and true effects."""
    return json.loads((sample_path() / "truth.json").read_text(encoding="utf-8"))
