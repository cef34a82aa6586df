"""The built documentation in a real browser (headless Chromium, from the system packages).

Opens the pages after their JavaScript ran and checks what a reader sees: the math is
typeset by the bundled MathJax (no raw LaTeX delimiters left, no network needed), every
image loads, and the landing page shows the main experiment's figure. Writes a screenshot
of each page to ``results/docs_screenshots/`` (``EPINN_SCREENSHOTS`` elsewhere) to look at.

Skips where no Chromium is installed (``apt-get install chromium``); ``.ci/run`` installs it
and sets ``EPINN_DOCS_REQUIRED=1``, under which a missing browser is a failure.
"""

from __future__ import annotations

import html as html_lib
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.image
import numpy as np
import pytest

from tests.test_docs import ROOT, built_docs

PAGES = (
    "index",
    "getting_started",
    "guide/nn_core",
    "guide/epidemic_models",
    "guide/estimation",
    "guide/forecasting",
    "guide/bayesian",
    "guide/scaling",
    "guide/custom_models",
    "guide/stochastic",
    "guide/amortized",
    "architecture",
    "datasets",
    "benchmarks",
    "theory/neural_networks",
    "theory/epidemics",
    "theory/next_generation",
    "auto_examples/index",
    "auto_examples/zika_host_vector",
    "auto_examples/boarding_school",
    "auto_examples/plot_sir_ensemble",
    "auto_examples/bombay_plague",
    "auto_examples/stochastic_outbreaks",
)


def chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable, or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _skip_without_browser() -> None:
    if chromium() is None:
        reason = "no Chromium installed (apt-get install chromium)"
        (pytest.fail if os.environ.get("EPINN_DOCS_REQUIRED") else pytest.skip)(reason)


def _browser(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    _skip_without_browser()
    exe = chromium()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--no-first-run", "--allow-file-access-from-files", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran (MathJax included)."""
    return _browser("--virtual-time-budget=20000", "--dump-dom", page.as_uri()).stdout


def screenshot(page: Path, out: Path, size: str = "1280,2400") -> Path:
    _browser("--virtual-time-budget=20000", f"--window-size={size}",
             f"--screenshot={out}", page.as_uri())
    return out


class _Visible(HTMLParser):
    """The text a reader sees, and the images: script, style, code and MathJax's own
    (already typeset) output are left out of the text."""

    HIDDEN = {"script", "style", "pre", "code", "mjx-container", "noscript", "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0  # inside how many hidden elements
        self.text: list[str] = []
        self.images: list[str] = []
        self.math_typeset = 0
        self.math_errors = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "mjx-container":
            self.math_typeset += 1
        if tag == "mjx-merror":
            self.math_errors += 1
        if tag in self.HIDDEN:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.text.append(data)


def _math_in_source(page: Path) -> int:
    """How many math elements Sphinx wrote into the page (before any script ran)."""
    return len(re.findall(r'class="math notranslate', page.read_text(encoding="utf-8")))


def _check_image(page: Path, src: str) -> None:
    url = urlparse(src)
    assert url.scheme in ("", "file"), f"{page.name}: image from the network: {src}"
    path = Path(unquote(url.path)) if url.scheme == "file" else page.parent / unquote(url.path)
    assert path.is_file(), f"{page.name}: broken image {src}"
    data = path.read_bytes()
    if path.suffix == ".svg":
        ET.fromstring(data)  # parses
    else:
        pixels = np.asarray(matplotlib.image.imread(path))
        assert pixels.shape[0] > 1 and pixels.shape[1] > 1, f"{page.name}: empty image {src}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _skip_without_browser()
    return built_docs(tmp_path_factory)


@pytest.fixture(scope="module")
def shots() -> Path:
    out = Path(os.environ.get("EPINN_SCREENSHOTS") or ROOT / "results" / "docs_screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("docs")  # the same worker as the build (one build)
@pytest.mark.parametrize("name", PAGES)
def test_page_in_browser(site, shots, name):
    page = site / f"{name}.html"
    dom = rendered_dom(page)
    seen = _Visible()
    seen.feed(dom)
    text = html_lib.unescape(" ".join(seen.text))
    # MathJax ran: every math element typeset, none with an error, no LaTeX left in the text.
    expected = _math_in_source(page)
    assert seen.math_typeset >= expected, (name, seen.math_typeset, expected)
    assert seen.math_errors == 0, name
    for raw in ("\\(", "\\)", "\\[", "\\]", "$$", "\\frac", "\\beta", "\\partial"):
        assert raw not in text, f"{name}: raw LaTeX {raw!r} visible"
    # No image is broken.
    for src in seen.images:
        _check_image(page, src)
    if name == "index":
        assert any(s.endswith("boarding_school_fits.png") for s in seen.images)
    if name.startswith("guide/") or name == "getting_started":
        assert any("_images/" in s for s in seen.images), f"{name}: no figure"
    # A screenshot to look at; it is not blank.
    shot = screenshot(page, shots / f"{name.replace('/', '__')}.png")
    pixels = np.asarray(matplotlib.image.imread(shot))
    assert pixels.std() > 0.01, f"{name}: blank screenshot"


@pytest.mark.slow
@pytest.mark.xdist_group("docs")
def test_math_is_typeset_offline(site):
    """The page with the most math: every element typeset by the bundled MathJax."""
    page = site / "theory" / "epidemics.html"
    assert _math_in_source(page) > 10
    source = page.read_text(encoding="utf-8")
    assert not re.search(r'<script[^>]+src="https?://', source)  # nothing from a CDN
    seen = _Visible()
    seen.feed(rendered_dom(page))
    assert seen.math_typeset >= _math_in_source(page)


def test_visible_text_parser():
    """The checker itself: it sees raw LaTeX and images, not code or typeset math."""
    seen = _Visible()
    seen.feed('<p>Rate \\(\\beta\\) <img src="a.png"></p><pre>x = "\\(" </pre>'
              "<mjx-container><mjx-merror>bad</mjx-merror></mjx-container><p>after</p>")
    text = " ".join(seen.text)
    assert "\\(" in text and "after" in text and 'x = "' not in text and "bad" not in text
    assert seen.images == ["a.png"] and seen.math_typeset == 1 and seen.math_errors == 1
