"""The rooms of the code: governance and the controller do not reach into the API.

Imports are read with :mod:`ast` (not by importing), so a lazy import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Modules of ``controller/`` still allowed to import ``api``: the runtime serves the API
#: (create_app, the live streams) and reads the running figures, which move to
#: controller/accounts/ in their own change. Shrink this set, never grow it.
SERVES_THE_API = {"controller/runtime.py"}


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


def test_controller_imports_api_only_where_it_serves_it() -> None:
    assert set(api_imports("controller")) <= SERVES_THE_API


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
