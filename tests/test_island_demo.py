"""Island planning on the demo, out of the box: ``config check`` runs the island checks,
``island plan`` works on the demo's config with the batteries' capacity and SoC read from
the devices, and the island command islands the demo for real (its grid-former opens the
simulated breaker) with ``/island`` showing it; a refusal's ``detail`` is a string."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from controller.governance.local import local_secret_path, read_local_secret
from tests.demo_process import start_demo

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def http(url: str, body: dict | None = None, secret: str | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:  # as the CLI on the controller's host (controller/governance/local.py)
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_demo_plans_and_islands_for_real(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo = start_demo(data, start="10:00")
    base = demo.base
    try:
        config = str(data / "coop.toml")  # absolute, run from another directory
        check = cli("config", "check", config, cwd=elsewhere)
        assert check.returncode == 0, check.stderr
        plan = cli("island", "plan", config, "--start", "2026-06-21T06:00", "--json",
                   cwd=elsewhere)
        assert plan.returncode == 0, plan.stderr
        body = json.loads(plan.stdout)
        batteries = {b["member"]: b for b in body["batteries"]}
        # the six simulated batteries, their capacity and SoC read from the devices
        assert len(batteries) == 6 and body["forecast"]["pv_kwh"] > 0
        assert all(0 < b["soc_now_pct"] < 100 for b in batteries.values())
        (data / "plan.json").write_text(plan.stdout, encoding="utf-8")
        # Without a token, from this host: refused (issue 18: commands come from tokens).
        status, anonymous = http(f"{base}/api/v1/island/command",
                                 {"requested_by": "test", "hours": 1, "required_soc_pct": 5})
        assert status == 401, anonymous
        secret = read_local_secret(local_secret_path(data / "ledger.sqlite"))
        assert secret is not None
        # a refused command: detail is one string naming the precondition
        status, refused = http(f"{base}/api/v1/island/command",
                               {"requested_by": "test", "hours": 1, "required_soc_pct": 99},
                               secret)
        assert status == 409 and isinstance(refused["detail"], str), refused
        assert refused["detail"].startswith("refused: ") and "99" in refused["detail"]
        status, accepted = http(f"{base}/api/v1/island/command",
                                {"requested_by": "test", "hours": 1, "required_soc_pct": 5},
                                secret)
        assert status == 202, accepted
        deadline = time.monotonic() + 60
        island: dict = {}
        while time.monotonic() < deadline:
            island = http(f"{base}/api/v1/island")[1]
            if island["state"] == "OFF_GRID":
                break
            time.sleep(0.5)
        assert island["state"] == "OFF_GRID" and island["islanded"], island
        assert island["device_grid"] == "off"  # the grid-former itself says so
        causes = [r["cause"] for r in island["recent"]]
        assert "islanded (device report)" in causes, causes
        page = urllib.request.urlopen(f"{base}/island", timeout=10).read().decode()
        assert "energy island" in page
    finally:
        out = demo.stop()
    assert demo.proc.returncode == 0, out
    assert "Traceback" not in out
