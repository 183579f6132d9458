"""Small fixes of the book's pages, loaded by `_config.yml` (sphinx: local_extensions).

- No thebe scripts: live code is off in this book, and sphinx-thebe adds its configuration script
  twice (a console error, "THEBE_JS_URL has already been declared"), with a URL outside this machine.
- `a11y.js`: accessible names for the sidebar's section toggles, keyboard access to tables that
  scroll sideways, and no list role on the bibliography (whose entries are not list items).
"""


def _drop_thebe(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if files:
        context["script_files"] = [
            f for f in files if "thebe" not in str(getattr(f, "filename", None) or f) + str(getattr(f, "attributes", {}).get("body", ""))
        ]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    app.add_js_file("a11y.js")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
