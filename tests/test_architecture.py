"""ARCHITECTURE.md's module map is true: every module is mapped, and its imports are the ones it declares.

The map is the table under "## Module map": ``| `path` | role | depends on |``.  Every module of the package
belongs to its most specific entry (a file, else its package folder).  For every import of one carecall_eval
module by another (at module level or inside a function), the imported entry must be listed above the importer
in the table and be declared in its "depends on" column (directly or through the entries it declares).
``from pkg import submodule`` counts as an import of the submodule (the package ``__init__`` files are lazy).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "carecall_eval"


def _entries():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    entries = []
    for line in section.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|.*\|\s*([^|]*)\|\s*$", line)
        if m:
            deps = [d.strip() for d in m.group(2).split(",") if d.strip() and d.strip() != "-"]
            entries.append((m.group(1).strip(), deps))
    return entries


def _entry_of(relpath: str, paths: list[str]) -> str | None:
    """Most specific table entry of a module path relative to the package ('cohorts/build.py')."""
    if relpath in paths:
        return relpath
    parts = relpath.split("/")
    for i in range(len(parts) - 1, 0, -1):
        folder = "/".join(parts[:i]) + "/"
        if folder in paths:
            return folder
    return None


def _resolve(module: str | None, level: int, importer: Path, names) -> list[str]:
    """Package-relative file paths an import refers to."""
    if level:
        base = importer.parent
        for _ in range(level - 1):
            base = base.parent
        parts = list(base.relative_to(PKG).parts)
    else:
        if not module or not (module == "carecall_eval" or module.startswith("carecall_eval.")):
            return []
        parts = []
        module = module[len("carecall_eval"):].lstrip(".") or None
    if module:
        parts += module.split(".")
    out = []
    for n in names:   # `from pkg import submodule`: the submodule
        c = parts + [n]
        if PKG.joinpath(*c).with_suffix(".py").is_file():
            out.append("/".join(c) + ".py")
        elif (PKG.joinpath(*c) / "__init__.py").is_file():
            out.append("/".join(c) + "/__init__.py")
    if not out:       # `from pkg.module import name` or `import pkg.module`
        p = PKG.joinpath(*parts) if parts else PKG
        if p.with_suffix(".py").is_file():
            out.append("/".join(parts) + ".py")
        elif (p / "__init__.py").is_file() and parts:
            out.append("/".join(parts) + "/__init__.py")
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(node.module, node.level, path, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                found.update(_resolve(a.name, 0, path, []))
    return found


def _dep_matches(dep: str, entry: str) -> bool:
    """A "depends on" name names an entry by its path (with or without `/` or `.py`), its stem, or a folder above it."""
    e = entry.rstrip("/").removesuffix(".py")
    d = dep.rstrip("/").removesuffix(".py")
    return d in (e, e.rsplit("/", 1)[-1]) or e.startswith(d + "/")


def test_module_map_is_complete():
    paths = [p for p, _ in _entries()]
    assert paths, "no module map table found in ARCHITECTURE.md"
    unmapped = [str(f.relative_to(PKG)) for f in sorted(PKG.rglob("*.py"))
                if f.name != "__init__.py" and f.name != "_version.py"
                and _entry_of(str(f.relative_to(PKG)), paths) is None]
    assert not unmapped, f"modules missing from ARCHITECTURE.md's module map: {unmapped}"
    missing = [p for p in paths if not p.startswith("notebooks") and not (PKG / p).exists()]
    assert not missing, f"ARCHITECTURE.md maps modules that do not exist: {missing}"


def test_imports_follow_the_map():
    entries = _entries()
    paths = [p for p, _ in entries]
    order = {p: i for i, p in enumerate(paths)}
    declared = {p: d for p, d in entries}

    def closure(entry: str) -> set[str]:
        seen: set[str] = set()
        todo = [entry]
        while todo:
            e = todo.pop()
            for dep in declared.get(e, []):
                if dep == "all above":
                    targets = [p for p in paths if order[p] < order[e]]
                else:
                    targets = [p for p in paths if _dep_matches(dep, p)]
                for t in targets:
                    if t not in seen:
                        seen.add(t)
                        todo.append(t)
        return seen

    bad = []
    for f in sorted(PKG.rglob("*.py")):
        rel = str(f.relative_to(PKG))
        src = _entry_of(rel, paths)
        if src is None:
            continue
        allowed = closure(src)
        for imp in sorted(_imports(f)):
            dst = _entry_of(imp, paths)
            if dst is None or dst == src or imp.endswith("__init__.py") and imp.count("/") == 0:
                continue
            if imp == "_version.py":
                continue
            if order[dst] >= order[src] or dst not in allowed:
                bad.append(f"{rel} imports {imp} ({dst}), not declared above {src}")
    assert not bad, "imports that ARCHITECTURE.md does not declare:\n" + "\n".join(bad)
