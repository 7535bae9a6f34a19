"""Where files go and how: names and output folders checked before any work, atomic writes after it.

Atomic writes: finished work is never half-written (temp file in the same folder + rename). Files get
the permissions any new file would get under the process's umask (0644 under umask 022), so results
on a shared filesystem are readable by colleagues, not only by their writer.

Checks: a name that becomes a path component (a sweep name, a trial id) is a name, never a path
(``check_name``); a folder a command will write into is one it can create or write (``check_output_dir``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UserError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically rename ``tmp_path`` to ``path``; a ``UserError`` naming ``path``
    when the system refuses (no such folder, permission, disk full)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        why = "a file stands where its folder should be" if isinstance(e, FileExistsError) else e.strerror or e
        raise UserError(f"cannot write {path} ({why}); choose a folder you can write") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path} ({e.strerror or e}); free space or choose another folder") from None
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def check_name(name: str, what: str) -> str:
    """``name`` if it is a safe single path component: letters, digits, '.', '_' and '-', starting with a letter
    or digit, at most 128 characters (so never '..', '/', '~' or a hidden file); else a ``UserError``."""
    if not NAME.fullmatch(name or ""):
        raise UserError(f"{what} '{name}' is not a plain name: use letters, digits, '.', '_' and '-' (starting with a "
                        "letter or digit, at most 128), e.g. table1-voc; where files go is --storage's job")
    return name


def check_output_dir(path: str | Path, what: str) -> Path:
    """``path`` as a folder to create or write into; a ``UserError`` when it is empty text, an existing file, or
    under a file or a folder this process cannot write."""
    if not str(path).strip():
        raise UserError(f"{what} is empty; give a folder, e.g. {what} runs/x")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} '{path}' is an existing file, not a folder; choose another path or move the file")
    anchor = p
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise UserError(f"{what} '{path}' lies under the file '{anchor}'; choose another path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise UserError(f"{what} '{path}': cannot write in '{anchor}' (permission denied); choose a folder you own")
    return p
