"""js/realtime.d.ts, the TypeScript declarations of the client, checked by ``tsc --noEmit``.

tests/js/typescript/usage.ts uses the API as a page does, and misuses it on
lines marked ``@ts-expect-error``: a declaration that is wrong either way
(too strict for the use, too loose for the misuse) fails the check.
TypeScript is pinned by tests/js/typescript/package-lock.json and installed
with ``npm ci`` when its node_modules is missing; without npm the test skips,
and under CI it fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.services import unavailable
from tests.test_js import node

ROOT = Path(__file__).resolve().parent.parent
DECLARATIONS = ROOT / "js" / "realtime.d.ts"
ENTRY = ROOT / "js" / "src" / "index.mjs"
CHECK = ROOT / "tests" / "js" / "typescript"


@pytest.fixture(scope="module")
def tsc() -> str:
    """Return the path of the pinned tsc, installing it with npm ci if need be."""
    binary = CHECK / "node_modules" / "typescript" / "bin" / "tsc"
    node()  # skips (in CI: fails) without a recent enough Node.js
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            unavailable(
                "npm is not installed", remedy="install npm (apt-get install npm) to check the TypeScript types"
            )
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=CHECK, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"npm ci in {CHECK} failed:\n{result.stdout}\n{result.stderr}"
    return str(binary)


def run_tsc(tsc: str, project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node(), tsc, "--noEmit", "-p", str(project)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_tsc_accepts_the_use_and_refuses_the_misuse(tsc):
    result = run_tsc(tsc, CHECK / "tsconfig.json")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("declared", "wrong"),
    [
        ("subscribe<T = unknown>(channel: string,", "subscribe<T = unknown>(channel: any,"),
        ('transport?: "auto" | TransportName;', "transport?: string;"),
        ("options?: SubscribeOptions<T> | ((event: RealtimeEvent<T>) => void)", "options?: SubscribeOptions<T>"),
        ("members(): UserMembers[];", ""),
    ],
    ids=["loose-channel", "loose-transport", "strict-subscribe", "missing-members"],
)
def test_a_wrong_declaration_fails_the_check(tsc, tmp_path, declared, wrong):
    text = DECLARATIONS.read_text()
    assert declared in text
    (tmp_path / "realtime.d.ts").write_text(text.replace(declared, wrong))
    shutil.copy(CHECK / "usage.ts", tmp_path / "usage.ts")
    config = (CHECK / "tsconfig.json").read_text().replace("../../../js/realtime.d.ts", "./realtime.d.ts")
    (tmp_path / "tsconfig.json").write_text(config)
    result = run_tsc(tsc, tmp_path / "tsconfig.json")
    assert result.returncode != 0, "tsc passed a wrong declaration"
    assert "usage.ts" in result.stdout


def test_the_declarations_name_every_export_of_the_client():
    exported = set()
    for names in re.findall(r'^export \{([^}]*)\} from "\./[\w-]+\.mjs";', ENTRY.read_text(), re.M):
        exported |= {name.strip() for name in names.split(",")}
    declared = set(re.findall(r"^export (?:class|function|const) (\w+)", DECLARATIONS.read_text(), re.M))
    assert declared == exported
