"""Reproducible installs: ``bootstrap.sh`` installs with ``-c constraints.txt``, which pins
every dependency pyproject.toml names (base, coop, agent and dev) to a version inside its
range."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            out[canonicalize_name(name)] = Version(version)
    return out


def test_every_dependency_is_pinned_inside_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    extras = project["optional-dependencies"]
    for text in project["dependencies"] + [r for k in ("coop", "agent", "dev", "fast")
                                          for r in extras[k]]:
        req = Requirement(text)
        if canonicalize_name(req.name) == "commonwatt":
            continue  # dev's own "commonwatt[coop]"
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(version, prereleases=True), (req, version)


def test_bootstrap_installs_with_the_constraints() -> None:
    script = (ROOT / "bootstrap.sh").read_text()
    # the coop's install (make_venv) and the agent's both take the pinned versions
    assert '-c constraints.txt \\\n        -e ".[coop,dev]"' in script
    assert '-c constraints.txt \\\n            ".[agent]"' in script
