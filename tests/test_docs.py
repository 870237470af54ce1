"""The documentation: the MkDocs site builds with warnings as errors, and its links work on GitHub too."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import services

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    """mkdocs.yml validates every link, anchor and page against the nav; --strict turns each warning into a failure."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        services.unavailable(
            "mkdocs and mkdocs-material are not installed",
            remedy="pip install -e '.[docs]' (the [test] extra has them)",
        )
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "migrate-from-django-eventstream" / "index.html").exists()
    # The landing page shows the package at work, code and a picture, and every page works offline.
    landing = (tmp_path / "site" / "index.html").read_text()
    assert 'src="images/demo-chat.png"' in landing and (tmp_path / "site" / "images" / "demo-chat.png").exists()
    assert "publish(" in landing and "EventSource(" in landing
    assert not [page for page in (tmp_path / "site").rglob("*.html") if "fonts.googleapis.com" in page.read_text()]


def prose(path):
    """Yield the lines of *path* outside fenced code blocks."""
    fence = None
    for line in path.read_text().splitlines():
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield line


def github_anchors(path):
    """Return the anchors GitHub gives the headings of *path* (github-slugger's rules)."""
    anchors, seen = set(), {}
    for line in prose(path):
        match = HEADING.match(line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2)).replace("`", "").replace("*", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def links(path):
    """Yield each link target of *path*'s prose, inline code left out."""
    for line in prose(path):
        yield from LINK.findall(INLINE_CODE.sub("", line))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_reach_a_file_and_a_heading_on_github(page):
    """A link between pages is a relative .md path, which GitHub and MkDocs both follow, to a heading that exists."""
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        if path.startswith("/"):
            broken.append(f"{target}: absolute, which neither GitHub nor MkDocs resolves against the repository")
            continue
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in github_anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_every_page_is_in_the_readmes_list():
    """The README lists the pages for readers on GitHub or on the package index, who never see the nav."""
    listed = {Path(target.partition("#")[0]).name for target in links(ROOT / "README.md") if target.startswith("docs/")}
    missing = sorted(p.name for p in DOCS.glob("*.md") if p.name not in listed)
    assert not missing, f"README.md does not link to {missing}"
