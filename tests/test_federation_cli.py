"""``commonwatt federation keygen | bridge-conf | status`` without a broker running."""

from __future__ import annotations

from pathlib import Path

from controller.cli import main
from tests.federation_helpers import charter_toml, make_charter, make_keys


def test_keygen_bridge_conf_and_bad_charter(tmp_path: Path, capsys) -> None:
    key = tmp_path / "a.key"
    assert main(["federation", "keygen", "--out", str(key)]) == 0
    public = capsys.readouterr().out.strip()
    assert len(public) == 44 and key.stat().st_mode & 0o777 == 0o600
    assert main(["federation", "keygen", "--out", str(key)]) == 2  # never overwritten

    keys = make_keys(["coop-a", "coop-b", "coop-c"])
    charter = make_charter(keys, "coop-b", key_dir=tmp_path, broker="127.0.0.1:18832")
    members = [m.model_copy(update={"broker": f"10.0.0.{k}:1883"})
               for k, m in enumerate(charter.members, 1)]
    path = tmp_path / "b.toml"
    path.write_text(charter_toml(charter.model_copy(update={"members": tuple(members)})))
    assert main(["federation", "bridge-conf", str(path)]) == 0
    conf = capsys.readouterr().out
    assert "listener 18832 127.0.0.1" in conf
    assert "connection coop-b--coop-c" in conf and "address 10.0.0.3:1883" in conf
    assert "coop-a--coop-b" not in conf  # coop-a opens that bridge
    assert "topic federation/coop-b/# out 1" in conf
    assert "topic federation/coop-c/# in 1" in conf

    path.write_text(path.read_text().replace('rule = "prorata"', 'rule = "fair"'))
    assert main(["federation", "status", str(path)]) == 2
    assert "federation.rule" in capsys.readouterr().err
