"""A warning at the top of every page whose run is stale, loaded by `_config.yml` (sphinx: local_extensions).

`python -m crnn.study build` (and `book`) writes `_stale.json` into the book folder: page name
(``runs/<run>``) -> ``{"run", "reasons", "git_commit", "git_clean"}`` for every run whose inputs
changed since it was computed. This extension puts a warning admonition right under the title of each
such page; the executed notebooks themselves are not touched. A page whose entry appears, changes or
disappears is read again, so that an incremental build never keeps an outdated warning.
"""

import json
from pathlib import Path

from docutils import nodes

STALE_FILE = "_stale.json"


def _load(app) -> dict:
    path = Path(app.srcdir) / STALE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _outdated(app, env, added, changed, removed):
    """Pages whose stale entry differs from the one of the last build: read them again."""
    stale = _load(app)
    before = getattr(env, "crnn_stale_pages", {})
    env.crnn_stale_pages = stale
    app.crnn_stale_pages = stale
    return [doc for doc in set(stale) | set(before) if stale.get(doc) != before.get(doc) and doc in env.found_docs]


def admonition(entry: dict) -> nodes.admonition:
    """The warning for one stale page."""
    commit = entry.get("git_commit")
    where = f"commit {commit[:10]}" if commit else "an unrecorded commit"
    if commit and entry.get("git_clean") is False:
        where += " (with uncommitted changes)"
    reasons = "; ".join(entry.get("reasons") or ["its inputs"])
    box = nodes.admonition(classes=["warning", "crnn-stale"])
    box += nodes.title(text="This page is stale")
    para = nodes.paragraph()
    para += nodes.Text(f"It was computed at {where}; what changed since: {reasons}. Run ")
    para += nodes.literal(text="make rebuild")
    para += nodes.Text(" to update it (")
    para += nodes.literal(text="python -m crnn.study status")
    para += nodes.Text(" lists every stale run).")
    box += para
    return box


def _insert(app, doctree):
    stale = getattr(app, "crnn_stale_pages", None)
    if stale is None:
        stale = app.crnn_stale_pages = _load(app)
    entry = stale.get(app.env.docname)
    if entry is None:
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None and section.children and isinstance(section[0], nodes.title):
        section.insert(1, admonition(entry))
    else:
        doctree.insert(0, admonition(entry))


def setup(app):
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-read", _insert)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
