"""Atomic writes and the checks on where files go."""

import os
import stat

import pytest

from cycleseg.model.errors import UserError
from cycleseg.model.io import atomic_write_bytes, atomic_write_text, check_output_dir


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """Shareable by default: 0644 under umask 022 (mkstemp alone would give 0600 whatever the umask)."""
    old = os.umask(umask)
    try:
        a = atomic_write_text(tmp_path / "sub" / "a.txt", "x")
        b = atomic_write_bytes(tmp_path / "b.bin", b"y")
    finally:
        os.umask(old)
    for f in (a, b):
        assert stat.S_IMODE(f.stat().st_mode) == mode, oct(f.stat().st_mode)


def test_a_failed_write_leaves_neither_the_file_nor_a_temp_file(tmp_path):
    from cycleseg.model.io import atomic_write

    def boom(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.txt", boom)
    assert list(tmp_path.iterdir()) == []


def test_a_write_the_system_refuses_is_one_user_error_naming_the_path(tmp_path):
    from cycleseg.model.io import atomic_write

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"cannot write .*f/out.txt \(a file stands where its folder should be\)"):
        atomic_write_text(tmp_path / "f" / "out.txt", "y")

    def full(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match=r"out.txt \(No space left on device\); free space"):
        atomic_write(tmp_path / "out.txt", full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_output_dir_checks(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    (tmp_path / "f").write_text("x")
    for bad, needle in (("", "--out is empty"), (str(tmp_path / "f"), "is an existing file"),
                        (str(tmp_path / "f" / "x"), "lies under the file")):
        with pytest.raises(UserError, match=needle):
            check_output_dir(bad, "--out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root may write anywhere
        with pytest.raises(UserError, match="permission denied"):
            check_output_dir(locked / "x", "--out")
