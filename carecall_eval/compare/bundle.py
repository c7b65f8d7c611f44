"""The aggregate bundle: a versioned directory of a JSON manifest and CSV tables.

Layout (format ``carecall_eval.bundle``, version 1; see ``docs/cross-operator.md``)::

    bundle/
      manifest.json    operator, period, threshold, metric definitions, suppression log, table index
      metrics.csv      every KPI and effect estimate (tidy rows, with se and se_scale for effects)
      km.csv           Kaplan-Meier points on a coarse grid (group, day, survival, ci_low, ci_high, at_risk)
      reach_series.csv monthly case-level reach (month, post_policy, n, reached, reach)
      flow.csv         cohort flow (step, kind, contact, comparison): total, exclusions, eligible

:func:`write_bundle` writes the directory atomically (a temporary sibling
renamed into place); :func:`read_bundle` checks the format version and every
table's SHA-256 before returning a :class:`Bundle`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "TABLES", "Bundle", "write_bundle", "read_bundle"]

BUNDLE_FORMAT = "carecall_eval.bundle"
BUNDLE_VERSION = 1
#: Table name -> file name, in the order they are written.
TABLES = {"metrics": "metrics.csv", "km": "km.csv", "reach_series": "reach_series.csv", "flow": "flow.csv"}


@dataclass(frozen=True)
class Bundle:
    """One operator's aggregate bundle, as read from disk.

    Attributes
    ----------
    path : Path
    manifest : dict
    tables : dict of str -> DataFrame
    """

    path: Path
    manifest: dict
    tables: dict = field(default_factory=dict)

    @property
    def operator(self) -> str:
        return self.manifest["operator"]

    @property
    def metrics(self) -> pd.DataFrame:
        return self.tables["metrics"]

    @property
    def definitions(self) -> dict:
        return self.manifest["definitions"]

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Bundle {self.operator} {self.manifest.get('quarter') or 'all data'} at {self.path}>"


def _csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    return buf.getvalue().encode()


def write_bundle(out: str | os.PathLike, manifest: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write a bundle directory atomically and return its path.

    ``out`` must not exist, be empty, or hold an earlier bundle (it is then
    replaced as a whole); any other directory is left alone and an error raised.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / "manifest.json").is_file():
            raise FileExistsError(f"{out} is a non-empty directory that is not a carecall_eval bundle; "
                                  "choose an empty or new --out directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = dict(manifest)
        index = {}
        for name, file in TABLES.items():
            data = _csv_bytes(tables[name])
            (tmp / file).write_bytes(data)
            index[name] = {"file": file, "rows": int(len(tables[name])),
                           "columns": list(map(str, tables[name].columns)),
                           "sha256": hashlib.sha256(data).hexdigest()}
        manifest["tables"] = index
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Read and verify a bundle directory.

    Raises
    ------
    ValueError
        If the manifest is not a carecall_eval bundle, its version is newer than
        this package reads, or a table does not match its recorded SHA-256.
    """
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{path}: no manifest.json; is this a bundle written by `carecall-eval export`?")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{mpath}: format is {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_VERSION:
        raise ValueError(f"{mpath}: bundle format version {version!r} is newer than this carecall_eval reads "
                         f"({BUNDLE_VERSION}); upgrade carecall_eval")
    tables = {}
    for name, entry in manifest["tables"].items():
        data = (path / entry["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"{path / entry['file']}: contents do not match the manifest's SHA-256; "
                             "the bundle was changed after export, export it again")
        tables[name] = pd.read_csv(io.BytesIO(data), keep_default_na=True)
    return Bundle(path, manifest, tables)
