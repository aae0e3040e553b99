"""The rooms of the code: governance and the controller do not reach into the API.

Imports are read with :mod:`ast` (not by importing), so a lazy import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent



def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def api_imports(folder: str) -> dict[str, list[str]]:
    """``{file: [api modules it imports]}`` for the files under ``folder`` that do."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path) if m == "api" or m.startswith("api."))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_governance_imports_nothing_from_api() -> None:
    assert (ROOT / "controller/governance/tokens.py").exists()
    assert api_imports("controller/governance") == {}


def test_controller_imports_nothing_from_api() -> None:
    """The runtime finds its web surface by entry point (controller/web.py)."""
    assert api_imports("controller") == {}


def test_the_runtime_finds_the_api_by_its_entry_point(tmp_path: Path) -> None:
    """The installed package names its surface; built over a ledger it serves the API."""
    from fastapi.testclient import TestClient

    from controller.ledger import LedgerReader
    from controller.web import load_surface
    from tests.ledger_helpers import random_flows, write_ledger

    ledger = tmp_path / "ledger.sqlite"
    rng = np.random.default_rng(1)
    write_ledger(ledger, ("h01", "h02"), 900, 1_800_000_000.0, 60.0,
                 [random_flows(rng, 2) for _ in range(40)])
    surface = load_surface(LedgerReader(ledger), None, None)
    answer = TestClient(surface.app).get("/healthz")
    assert answer.status_code == 200 and answer.json()["ledger_intervals"] >= 1
    surface.cycle_done(None)  # never raises
    surface.close()


def test_dispatch_imports_no_other_package() -> None:
    for path in sorted((ROOT / "dispatch").rglob("*.py")):
        others = {m.split(".")[0] for m in imported_modules(path)} & {
            "api", "controller", "devices", "simulators"}
        assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_the_api_keeps_no_governance_store() -> None:
    """The token store, audit log, rotation and terms are not in api/ any more."""
    for gone in ("api/auth/tokens.py", "api/governance/audit.py",
                 "api/governance/rotation.py", "api/governance/terms.py"):
        assert not (ROOT / gone).exists(), gone


#: What the running controller loads: its cycle, its runtime and the web surface it serves.
RUNTIME_MODULES = ("controller.runtime", "controller.cycle", "api.surface")
#: The island day's tools and what they pull in: never loaded by the running controller.
DAY_TOOLS = ("controller.island_day", "simulators", "matplotlib", "controller.cli")


def test_the_running_island_room_imports_nothing_of_the_day_tools() -> None:
    """``controller/island/`` runs every cycle; the day's tools (plan in words, odds,
    rehearsal, report) live in ``controller/island_day/`` (issue 21, point 10)."""
    assert (ROOT / "controller/island_day/rehearse.py").exists()
    for path in sorted((ROOT / "controller/island").glob("*.py")):
        bad = [m for m in imported_modules(path) if m.startswith(DAY_TOOLS)]
        assert bad == [], (str(path.relative_to(ROOT)), bad)


def test_the_running_controller_loads_no_day_tool() -> None:
    """Imported for real, in a fresh interpreter, with every lazy import at the top level
    resolved: the runtime's modules load no rehearsal, report, simulator or matplotlib."""
    import subprocess
    import sys

    probe = ("import sys\n" + "".join(f"import {m}\n" for m in RUNTIME_MODULES)
             + f"print(sorted(m for m in sys.modules if m.startswith({DAY_TOOLS!r})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
