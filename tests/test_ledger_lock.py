"""One writer per ledger whatever path names it (#18): symlink, hard link, bind mount.

The holder is a real second process, as a second ``commonwatt run`` would be.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.demo import booked_until
from controller.ledger import LedgerLockedError, LedgerWriter

ROOT = Path(__file__).resolve().parents[1]
HOLDER = textwrap.dedent("""
    import sys, time
    from controller.ledger import LedgerWriter
    w = LedgerWriter(sys.argv[1], 900, [("a", "A")])
    print("holding", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A process writing ``tmp_path/real/ledger.sqlite``: (its path, its pid)."""
    path = tmp_path / "real" / "ledger.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield path, proc.pid
    finally:
        proc.kill()
        proc.wait()


def _refused(path: Path, pid: int) -> str:
    """The refusal's message (it must name the holder's pid)."""
    with pytest.raises(LedgerLockedError, match=f"process {pid} .*whatever path") as err:
        LedgerWriter(path, 900, [("a", "A")])
    return str(err.value)


def test_a_second_writer_through_a_symlink_is_refused(holder: tuple[Path, int],
                                                       tmp_path: Path, reliability) -> None:
    row = reliability("second-controller-link", "A second writer opening the ledger through "
                      "a symlinked directory or a symlinked file, while another process "
                      "holds it, is refused with LedgerLockedError naming the holder's pid. "
                      "The hard link and the bind mount are the same refusal in "
                      "test_a_second_writer_through_a_hard_link_is_refused and "
                      "test_a_second_writer_through_a_bind_mount_is_refused (skipped "
                      "without root).")
    path, pid = holder
    (tmp_path / "alias").symlink_to(path.parent, target_is_directory=True)
    (tmp_path / "link.sqlite").symlink_to(path)
    messages = [_refused(tmp_path / "alias" / "ledger.sqlite", pid),  # a symlinked directory
                _refused(tmp_path / "link.sqlite", pid)]  # a symlinked file
    inode = os.stat(path).st_ino
    row.observed = (f"{len(messages)} of 2 symlinked opens (directory, file) refused while "
                    f"a second process held the ledger; "
                    f"{sum(f'process {pid} ' in m for m in messages)} name the holder's pid, "
                    f"{sum(f'inode {inode})' in m for m in messages)} the real file's inode, "
                    f"{sum('whatever path' in m for m in messages)} say the path does not "
                    "matter")


def test_a_second_writer_through_a_hard_link_is_refused(holder: tuple[Path, int],
                                                         tmp_path: Path) -> None:
    path, pid = holder
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.link(path, other / "ledger.sqlite")
    _refused(other / "ledger.sqlite", pid)


def _can_bind_mount() -> str | None:
    if os.geteuid() != 0:
        return "bind mounts need root"
    if shutil.which("mount") is None:
        return "no mount(8) here"
    return None


def test_a_second_writer_through_a_bind_mount_is_refused(holder: tuple[Path, int],
                                                          tmp_path: Path) -> None:
    path, pid = holder
    why = _can_bind_mount()
    if why:
        pytest.skip(why)
    target = tmp_path / "mounted"
    target.mkdir()
    done = subprocess.run(["mount", "--bind", str(path.parent), str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:  # a container without CAP_SYS_ADMIN, say
        pytest.skip(f"mount --bind is not allowed here: {done.stderr.strip()}")
    try:
        assert os.stat(target / "ledger.sqlite").st_ino == os.stat(path).st_ino
        _refused(target / "ledger.sqlite", pid)
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_the_lock_is_released_with_the_writer_and_the_ledger_is_owner_only(
        tmp_path: Path) -> None:
    path = tmp_path / "var" / "ledger.sqlite"
    LedgerWriter(path, 900, [("a", "A")]).close()
    LedgerWriter(tmp_path / "var" / "." / "ledger.sqlite", 900, [("a", "A")]).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_taking_the_lock_of_a_missing_ledger_leaves_nothing_booked(tmp_path: Path) -> None:
    """The demo checks the lock before it starts; the empty file it leaves is no ledger."""
    from controller.ledger.lock import WriterLock

    WriterLock(tmp_path / "ledger.sqlite").release()
    assert booked_until(tmp_path / "ledger.sqlite") is None
