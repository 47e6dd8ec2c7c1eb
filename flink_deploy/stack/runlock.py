"""The run folder's lock: one `alertflow run` or `alertflow stack up` at a time holds a run
folder (an exclusive ``flock`` on its ``lock`` file, which says who holds it)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flink_deploy.stack.config import StackConfig, StackError

# The run folders this process holds, with how many nested holds each.
_HELD: dict[Path, tuple[int, int]] = {}


@contextmanager
def hold(cfg: StackConfig, command: str) -> Iterator[None]:
    """Hold ``cfg.run_dir`` for ``command`` (an ``up`` or an ``alertflow run``) until the block
    ends: an exclusive lock on its ``lock`` file, which says who holds it. Nested holds in one
    process share the lock; the lock goes with the process, however it ends.

    Raises StackError naming the holder if another process holds the folder.
    """
    if cfg.run_dir in _HELD:
        fd, depth = _HELD[cfg.run_dir]
        _HELD[cfg.run_dir] = (fd, depth + 1)
    else:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        path = cfg.run_dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(errors="replace").strip() or "another process"
            os.close(fd)
            raise StackError(
                f"{cfg.run_dir} is held by {holder}: one `alertflow run` or `stack up` at a "
                "time. Use the stack it runs, stop it (Ctrl-C there, or `alertflow stack "
                "down`), or give this one its own folder with ALERTFLOW_RUN_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd, f"`{command}` (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n".encode()
        )
        _HELD[cfg.run_dir] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _HELD[cfg.run_dir]
        if depth > 1:
            _HELD[cfg.run_dir] = (fd, depth - 1)
        else:
            del _HELD[cfg.run_dir]
            os.close(fd)
