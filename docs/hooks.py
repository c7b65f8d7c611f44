"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``).

The navigation names every page the site is meant to have; some are written by other parts of the project
(``mapping.md``, ``trust.md`` ...).  A page whose file is not there yet is left out of the navigation (logged,
not a warning, so ``mkdocs build --strict`` still passes), and any page in ``docs/`` the navigation does not
name is added under "More", so nothing written is left unreachable.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.carecall_eval")


def _prune(items, docs: Path, seen: set[str]):
    out = []
    for item in items:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                kept = _prune(value, docs, seen)
                if kept:
                    out.append({title: kept})
            elif (docs / value).is_file() or "://" in value:
                seen.add(value)
                out.append(item)
            else:
                log.info("page %s is not written yet: left out of the navigation", value)
        elif isinstance(item, str):
            if (docs / item).is_file():
                seen.add(item)
                out.append(item)
    return out


def on_config(config, **kwargs):
    docs = Path(config["docs_dir"])
    seen: set[str] = set()
    nav = _prune(config["nav"] or [], docs, seen)
    extra = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
                   if p.relative_to(docs).as_posix() not in seen and not p.name.startswith("_")
                   and "generated/walkthrough_files" not in p.as_posix())
    if extra:
        nav.append({"More": [{_title(docs / e): e} for e in extra]})
    config["nav"] = nav
    return config


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


#: Pages other parts of the project write; until one exists, links to it are shown as plain text.
PLANNED = ("mapping.md", "trust.md", "trials.md", "programme.md")


def on_page_markdown(markdown, page, config, files, **kwargs):
    import re

    docs = Path(config["docs_dir"])
    for name in PLANNED:
        if not (docs / name).is_file() and f"]({name}" in markdown:
            log.info("%s links to %s, not written yet: shown as plain text", page.file.src_uri, name)
            markdown = re.sub(r"\[([^\]]+)\]\(" + re.escape(name) + r"(#[^)]*)?\)", r"\1", markdown)
    return markdown
