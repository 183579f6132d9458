"""The checks of a built book, shared by tests/test_book.py (the book of the quick runs) and
tests/test_book_full.py (the book of the committed full runs): each of those modules defines the fixture
`book_html`, (kind, html folder), and imports these tests and fixtures, so pytest collects them there.

The leak, link and browser checks: every page loads with no console error and no request leaving this machine;
the mathematics is typeset by the bundled MathJax; every image has loaded and has alternative text; every internal
link resolves; axe-core finds no serious or critical accessibility violation.
At a 1280 px wide window a reader can read every page at a glance: no figure is shown at less than half
its natural width, no code cell shows printed lines or plain reprs (unless tagged `deliberate-output`),
no section of a page's outline holds only code.

The browser tests use headless Chromium (Debian's package) driven by Playwright. Chromium is looked up as
`$CRNN_CHROMIUM`, `chromium` or `chromium-browser`. Where it is missing the test is skipped with a message saying
so; with `CRNN_REQUIRE_BROWSER=1` (set by CI) it fails instead.
"""

import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from crnn import study

__all__ = [
    "browser",
    "served_book",
    "test_book_builds_offline_from_the_runs",
    "test_every_internal_link_resolves",
    "test_pages_in_a_real_browser",
    "test_pages_read_at_a_glance",
]


def _stale_pages(html: Path) -> set[str]:
    return {p.stem for p in (html / "runs").glob("*.html") if "crnn-stale" in p.read_text()}


def test_book_builds_offline_from_the_runs(book_html, request):
    kind, html = book_html
    for page in ["intro", "runs/case1-order-penalty", "runs/case4-stiffness", "runs/conclusions"]:
        assert (html / f"{page}.html").exists(), page
    index = (html / "runs" / "conclusions.html").read_text()
    quick_text = re.search(r"quick test runs \(\w", index)
    if kind == "full":  # the full book's numbers come from full runs
        assert quick_text is None
        stale = {s.name for s in study.run_status(quick=None) if s.state == "stale"}
        assert _stale_pages(html) == stale  # a warning atop exactly the pages of stale runs
    elif not os.environ.get("CRNN_TEST_BOOK_HTML"):  # a quick book (not a full one given to re-check)
        # the build says, in the text and not only in the folded source, when its numbers come from quick runs
        assert quick_text is not None
        book, results, _ = request.getfixturevalue("quick_study")
        stale = [s for s in study.run_status(quick=None, book_dir=book, results_dir=results) if not s.fresh]
        assert not stale and not _stale_pages(html), stale  # quick runs just computed: fresh, not stale for being quick
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', (html / "intro.html").read_text())
    assert any("mathjax" in s for s in scripts)
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    repro = (html / "reproducibility.html").read_text()
    assert all(name in repro for name in [r.name for r in study.load_manifest()])
    assert "git" in repro.lower() and "jax" in repro
    leaks = []  # no path of the machine that built the book, no environment warning, on any page
    for page in html.rglob("*.html"):
        text = page.read_text()
        leaks += [(page.name, m) for m in re.findall(r"(?:/tmp/|/home/|/root/|/work/|site-packages|\.venv/)[^\s\"'<]*", text)]
        leaks += [(page.name, "TqdmWarning")] if "TqdmWarning" in text else []
    assert not leaks, leaks[:10]
    titles = re.findall(r"<title>(.*?)</title>", (html / "runs" / "case5-2AB.html").read_text())
    assert titles and "2A + B" in titles[0], titles


def _chromium() -> str | None:
    for candidate in (os.environ.get("CRNN_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _skip_or_fail(reason: str):
    if os.environ.get("CRNN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and CRNN_REQUIRE_BROWSER=1 asks for the browser test")
    pytest.skip(f"browser test SKIPPED: {reason} (apt-get install chromium to run it)")


@pytest.fixture(scope="module")
def served_book(book_html):
    _, html = book_html
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    if chromium is None:
        _skip_or_fail("no Chromium executable found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _pages(html_dir: Path) -> list[str]:
    """The book's pages (Sphinx's index and search pages and redirect stubs aside)."""
    skip = {"genindex.html", "search.html"}
    pages = [p for p in html_dir.rglob("*.html") if p.name not in skip and "_static" not in p.parts]
    return sorted(p.relative_to(html_dir).as_posix() for p in pages if 'http-equiv="Refresh"' not in p.read_text()[:2000])


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def test_every_internal_link_resolves(served_book):
    html_dir, _ = served_book
    parsed = {}
    for page in _pages(html_dir):
        parser = _Links()
        parser.feed((html_dir / page).read_text())
        parsed[page] = parser
    broken = []
    for page, parser in parsed.items():
        for href in parser.hrefs:
            if re.match(r"^[a-z]+:", href):  # http:, mailto:, javascript: ...
                continue
            target = urlsplit(urljoin(page, href))
            path = unquote(target.path) or page
            if not (html_dir / path).exists():
                broken.append((page, href))
            elif target.fragment and path in parsed and target.fragment not in parsed[path].ids:
                broken.append((page, href))
    assert not broken, broken[:20]


def test_pages_in_a_real_browser(served_book, browser):
    from axe_playwright_python.sync_playwright import Axe

    html_dir, base = served_book
    axe = Axe()
    problems = []
    context = browser.new_context()
    outside = []

    def route(r):
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", None):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    for page_name in _pages(html_dir):
        page = context.new_page()
        errors = []
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.goto(base + page_name, wait_until="load")
        has_math = page.evaluate("() => !!document.querySelector('.math')")
        if has_math:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
            page.evaluate("() => MathJax.startup.promise")
            if not page.evaluate("() => document.querySelectorAll('mjx-container').length > 0"):
                problems.append((page_name, "mathematics not typeset by MathJax"))
        text = page.evaluate("() => document.body.innerText")
        raw = [s for s in ("$$", "\\(", "\\[", "\\frac", "\\rightarrow") if s in text]
        if raw:
            problems.append((page_name, f"raw TeX in the visible text: {raw}"))
        images = page.evaluate(
            "() => Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,"
            " alt: (i.getAttribute('alt') || '').trim()}))"
        )
        for img in images:
            if not img["ok"]:
                problems.append((page_name, f"image did not load: {img['src']}"))
            if not img["alt"] or re.search(r"\.(png|jpe?g|svg)$", img["alt"]):
                problems.append((page_name, f"image without alternative text: {img['src']} (alt {img['alt']!r})"))
        problems += [(page_name, f"console error: {e}") for e in errors]  # before axe, whose own fetches may 404
        result = axe.run(page)
        for v in result.response["violations"]:
            if v.get("impact") in ("serious", "critical"):
                problems.append((page_name, f"axe {v['impact']}: {v['id']} ({len(v['nodes'])} nodes): {v['help']}"))
        page.close()
    context.close()
    problems += [("(any)", f"request leaving the machine: {u}") for u in sorted(set(outside))]
    assert not problems, "\n".join(f"{p}: {m}" for p, m in problems[:40])


# What a reader sees of a figure and of a code cell's output, at the width of an ordinary screen.
_READER_VIEWPORT = {"width": 1280, "height": 900}
_CODE_OUTPUT = ", ".join(
    f"div.cell_output .output.{kind}" for kind in ("stream", "stderr", "traceback", "text_plain")
)  # printed lines, warnings, errors and plain reprs of a code cell (myst-nb's classes); tables and figures are other kinds
_DELIBERATE = "tag_deliberate-output"  # myst-nb's class for a cell tagged `deliberate-output`
_CODE_ONLY_SECTIONS = """() => Array.from(document.querySelectorAll('main section section')).filter(s => {
    const kids = Array.from(s.children).filter(c => !/^H[1-6]$/.test(c.tagName) && c.tagName !== 'SECTION');
    return kids.length > 0 && kids.every(c => c.matches('div.cell') && !c.querySelector('.cell_output'));
}).map(s => s.querySelector('h1, h2, h3, h4, h5, h6').textContent.replace(/#$/, '').trim())"""


def test_pages_read_at_a_glance(served_book, browser):
    """Every page, as a reader sees it in a window 1280 px wide: (a) no figure is shown at less than half its natural
    width (a figure drawn too wide is scaled down until its text cannot be read: at most three panels a row, about
    7 inches at 100 dpi, `crnn.report.panel_grid`); (b) no code output that is not a result: printed lines (progress,
    logs), warnings, tracebacks or plain-text reprs, unless the cell is tagged `deliberate-output`; (c) no section
    of the page's outline that holds nothing but (folded) code, such as an "Imports" heading."""
    html_dir, base = served_book
    context = browser.new_context(viewport=_READER_VIEWPORT)
    context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname in ("127.0.0.1", None) else r.abort())
    problems = []
    for page_name in _pages(html_dir):
        page = context.new_page()
        page.goto(base + page_name, wait_until="load")
        for img in page.evaluate(
            "() => Array.from(document.querySelectorAll('main img')).filter(i => i.naturalWidth > 0 && i.clientWidth > 0)"
            ".map(i => ({src: i.getAttribute('src'), shown: i.clientWidth, natural: i.naturalWidth}))"
        ):
            if img["shown"] < 0.5 * img["natural"]:
                problems.append(
                    (page_name, f"figure shown at {img['shown']} of its {img['natural']} px, too small to read: {img['src']}")
                )
        for out in page.evaluate(
            "(sel) => Array.from(document.querySelectorAll(sel)).map(o => ({cell: (o.closest('div.cell') || o).className,"
            " kind: o.className, text: (o.querySelector('pre') || o).textContent.trim().slice(0, 120)}))",
            _CODE_OUTPUT,
        ):
            if _DELIBERATE not in out["cell"].split():
                problems.append((page_name, f"code output that is not a result ({out['kind']}): {out['text']!r}"))
        for heading in page.evaluate(_CODE_ONLY_SECTIONS):
            problems.append((page_name, f"a section with nothing but code in the page's outline: {heading!r}"))
        page.close()
    context.close()
    assert not problems, "\n".join(f"{p}: {m}" for p, m in problems[:60])
