"""Writing files atomically: the one writer every file of the package goes through.

A reader (or a crash, a full disk, a Ctrl-C) sees either the old file or the complete new
one, never a half-written file, and no temporary file is left behind on failure.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def _test_delay() -> None:
    """A test hook: $LENET_NATIVE_TEST_WRITE_DELAY seconds of sleep between the complete
    temporary file and its rename, so a test can kill a process in the middle of a write
    (tests/test_kill_resume.py). Unset (always, outside those tests): nothing."""
    delay = os.environ.get("LENET_NATIVE_TEST_WRITE_DELAY")
    if delay:
        import time
        time.sleep(float(delay))


def atomic_write(path, write) -> None:
    """Write a file atomically.

    ``write(f)`` is called with ``f`` a binary file open for reading and writing on a new
    temporary file ``.<name>.<random>.tmp`` beside ``path`` (so a writer may read back what
    it wrote, e.g. to checksum it). Then the temporary file is flushed and fsynced, given
    its mode, and renamed over ``path``; finally the folder is fsynced, so that the rename
    itself survives a power loss.

    The mode: an existing ``path`` keeps its own (a file the user made private stays
    private); a new file gets ``0666 & ~umask``, as ``open()`` would give it (not
    mkstemp's 0600).

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace. Its folder must exist.
    write : callable
        ``write(f)``; what it returns is ignored.

    Raises
    ------
    Exception
        Whatever ``write`` or the OS raises (KeyboardInterrupt included): the temporary
        file is then removed and ``path`` is left as it was.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _test_delay()
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _umask() -> int:
    """The process's umask. Read from /proc where Linux shows it: setting it to read it back
    (the only portable way) changes it for every thread for a moment."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """fsync a folder (POSIX), making a rename in it durable; errors ignored (some file
    systems cannot)."""
    if os.name != "posix":
        return
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
