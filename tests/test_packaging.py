"""The distribution: an sdist and a wheel that hold what a project needs, and pass twine's check."""

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import django_realtime

ROOT = Path(__file__).resolve().parent.parent

#: What a project needs at run time besides the code, in both archives.
NEEDED = [
    "django_realtime/migrations/0001_initial.py",
    "django_realtime/migrations/0004_innodb_transactions.py",
    "django_realtime/static/django_realtime/realtime.js",
    "django_realtime/templates/admin/django_realtime/event/publish.html",
    "django_realtime/templates/django_realtime/progress.html",
    "django_realtime/templates/admin/django_realtime/event/status.html",
    "django_realtime/metrics/views.py",
    "django_realtime/py.typed",
]

#: Left out of the copy that is built.
UNPACKED = (
    ".git",
    ".venv",
    ".nox",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "artifacts",
    "node_modules",
)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    if importlib.util.find_spec("build") is None or importlib.util.find_spec("twine") is None:
        pytest.skip("build and twine are not installed (they come with the [test] extra)")
    # From a copy: a build/ left in the checkout by an earlier build could slip stale files in.
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNPACKED))
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return sdist, wheel


def test_the_wheel_and_the_sdist_hold_the_migrations_static_files_and_templates(archives):
    sdist, wheel = archives
    version = django_realtime.__version__
    assert wheel.name.startswith(f"django_realtime_log-{version}-")
    assert sdist.name == f"django_realtime_log-{version}.tar.gz"
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    prefix = f"django_realtime_log-{version}/"
    in_sdist = {name.removeprefix(prefix) for name in tarfile.open(sdist).getnames()}
    for path in NEEDED:
        assert path in in_wheel, f"{path} is not in the wheel"
        assert path in in_sdist, f"{path} is not in the sdist"
    assert not any(name.startswith(("tests/", "testproject/", "bench/")) for name in in_wheel)


def test_twine_check_passes(archives):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, archives)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
