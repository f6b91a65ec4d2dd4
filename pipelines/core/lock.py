"""Advisory file locks (``fcntl.flock``) that say who holds them, and leftovers of dead writers.

A lock is a small file (``.<name>.lock`` beside what it guards, or ``.dcat.lock`` in a folder)
locked with ``flock``. The kernel releases it when the holder's process ends in any way (kill -9
included), so a lock is never stale: a lock that cannot be taken belongs to a live process. The
holder writes ``<pid> <host>`` into the file, which the error and wait messages quote.

On a file system without ``flock`` (some network mounts answer ENOLCK), or without ``fcntl`` (not
POSIX), a lock is taken without excluding anyone, as dcat behaved before it had locks.

The lock file is removed on release. That is safe with the usual check: after ``flock`` succeeds
the holder checks that the path still names the file it locked (a waiter that got the lock on a
file a previous holder just removed tries again on the new file).

``lock_name``/``guarded_name`` map a leftover of an interrupted write to the lock that guards it:
an atomic write's temporary file (``.<name>.<random>.tmp[<suffix>]``,
:func:`pipelines.core.io.atomic_path`) to ``<name>``; whoever holds ``<name>``'s lock may remove it.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

from pipelines.core.errors import DcatError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, as before dcat had them
    fcntl = None


class LockBusy(DcatError):
    """The lock is held by another process (``holder``: its ``<pid> <host>``, as it wrote it)."""

    def __init__(self, path: Path, holder: str, what: str):
        self.path, self.holder = Path(path), holder
        self.holder_text = _holder_text(holder)  # "pid 123 on host"
        super().__init__(f"{what} is in use by another dcat process ({self.holder_text}; lock {path})")


def _holder_text(holder: str) -> str:
    parts = holder.split()
    if not parts:
        return "holder unknown"
    return f"pid {parts[0]}" + (f" on {parts[1]}" if len(parts) > 1 else "")


def lock_path_for(path: str | Path) -> Path:
    """The lock file that guards ``path``: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing). Not re-entrant: two ``FileLock``
    on one path in one process exclude each other like two processes do.

    ``acquire(blocking=False)`` raises :class:`LockBusy` at once when another process holds it;
    ``blocking=True`` waits (``timeout`` seconds at most, then LockBusy). ``what`` names the thing
    guarded in the messages."""

    def __init__(self, path: str | Path, what: str | None = None):
        self.path = Path(path)
        self.what = what or str(self.path)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def holder(self) -> str:
        """What the holder wrote (``<pid> <host>``), '' when unknown."""
        try:
            return self.path.read_text()[:200].strip()
        except OSError:
            return ""

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> FileLock:
        if self.fd is not None:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if not self._lock(fd, blocking, deadline):
                    raise LockBusy(self.path, self.holder(), self.what)
                if _same_file(fd, self.path):  # not removed by a previous holder meanwhile
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
                    self.fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the file we locked was removed on release: take the new one

    @staticmethod
    def _lock(fd: int, blocking: bool, deadline: float | None) -> bool:
        if fcntl is None:  # pragma: no cover
            return True
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as e:
                if e.errno in _NO_LOCKS:  # a file system without flock: run unlocked, as before locks
                    return True
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            if deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # wait in the kernel
                return True
            time.sleep(0.05)

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)  # while still held: a waiter notices and retries
        except OSError:
            pass
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> FileLock:
        if self.fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


#: flock's answers on a file system that has no locks (some network mounts)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def guarded_name(leftover: str) -> str | None:
    """The file an atomic write's temporary ``.<name>.<random>.tmp[<suffix>]`` was going to become
    (``<name>``); None for a name of another form."""
    if not leftover.startswith(".") or ".tmp" not in leftover:
        return None
    stem = leftover[1:leftover.rindex(".tmp")]
    name, dot, rand = stem.rpartition(".")
    return name if dot and name and rand else None


def try_lock(path: str | Path, what: str | None = None) -> FileLock | None:
    """The lock, taken now, or None when another process holds it."""
    try:
        return FileLock(path, what).acquire(blocking=False)
    except LockBusy:
        return None
