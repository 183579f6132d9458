"""The book builds offline, warnings as errors, and renders maths from bundled MathJax."""

import re

import pytest

from crnn import study


@pytest.mark.slow
def test_book_builds_offline(tmp_path):
    book = study.prepare_book_copy(tmp_path / "book")
    html = study.build_book(book)
    index = (html / "intro.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', index)
    assert any("mathjax" in s for s in scripts)
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
