"""package.json: the client installs with npm from the repository or a tarball, with its built file and types.

Skips without npm (fails under CI). No registry is asked: the package has no
dependencies, and the tarball installs offline.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import django_realtime
from tests.support.services import unavailable
from tests.test_js import node

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = json.loads((ROOT / "package.json").read_text())


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        unavailable("npm is not installed", remedy="install npm (apt-get install npm) to test the npm package")
    return found


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack")
    result = subprocess.run(
        [npm(), "pack", str(ROOT), "--pack-destination", str(out)],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = out.glob("*.tgz")
    return found


def test_the_tarball_holds_the_built_client_and_its_declarations(tarball):
    names = set(tarfile.open(tarball).getnames())
    for path in (
        "django_realtime/static/django_realtime/realtime.js",
        "django_realtime/static/django_realtime/realtime.mjs",
        "js/realtime.d.ts",
        "package.json",
    ):
        assert f"package/{path}" in names, f"{path} is not in {tarball.name}"
    left_out = ("package/tests/", "package/js/src/", "package/django_realtime/sse")
    assert not any(name.startswith(left_out) for name in names)
    packed = tarfile.open(tarball).extractfile("package/django_realtime/static/django_realtime/realtime.js")
    assert packed is not None
    assert packed.read() == (ROOT / "django_realtime/static/django_realtime/realtime.js").read_bytes()


def test_the_package_installed_from_the_tarball_imports_by_name(tarball, tmp_path):
    project = tmp_path / "page"
    project.mkdir()
    (project / "package.json").write_text('{"name": "page", "private": true, "type": "module"}\n')
    result = subprocess.run(
        [npm(), "install", "--offline", "--no-audit", "--no-fund", str(tarball)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    script = (
        'import Realtime, { VERSION, Cursor, SSEParser } from "django-realtime-log";\n'
        'const api = globalThis[Symbol.for("django-realtime")];\n'
        "console.log(JSON.stringify({ VERSION, same: Realtime === api.Realtime, "
        'cursor: String(Cursor.parse("12~11")), parser: typeof SSEParser }));\n'
    )
    (project / "check.mjs").write_text(script)
    run = subprocess.run([node(), "check.mjs"], cwd=project, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    expected = {"VERSION": PACKAGE["version"], "same": True, "cursor": "12~11", "parser": "function"}
    assert json.loads(run.stdout) == expected


def test_the_npm_package_the_python_package_and_the_client_share_one_version():
    source = (ROOT / "js" / "src" / "options.mjs").read_text()
    match = re.search(r'^export const VERSION = "([^"]+)";', source, re.M)
    assert match is not None
    assert PACKAGE["version"] == match.group(1) == django_realtime.__version__
