"""Ctrl-C and SIGTERM in the driver: the first stops the run cleanly, a second stops it at once.

    python -m sweep ...      # Ctrl-C once: running jobs checkpoint at their next step and stop
                             # Ctrl-C twice: running jobs are stopped at once (killed)

The CLI calls ``install()`` first thing: until a launch begins, a signal simply
ends the command (``KeyboardInterrupt``, no traceback: ``cli.main`` catches it).
Around the launch the CLI enters ``graceful()``: the first SIGINT or SIGTERM is
recorded (``requested()``), the DAG executor starts nothing more, and the
launcher's listeners (``on_signal``) forward a stop to the jobs it runs, which
save a checkpoint and end as ``interrupted``. A second signal tells the listeners
to stop at once; when none can (the inline launcher runs the job in this process
and only polls ``requested()``), or on a third signal, it raises
``KeyboardInterrupt``. A launcher that registers no listener (Ray, Slurm's wait)
gets ``KeyboardInterrupt`` at the first signal, as before.

Process-wide state, because signal handlers are: one driver per process.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_count = 0
_signum: int | None = None
_graceful = False
_listeners: list[Callable[[bool], bool]] = []


def requested() -> bool:
    """Whether a stop signal arrived since ``install``/``reset``."""
    return _count > 0


def signal_name() -> str:
    return signal.Signals(_signum).name if _signum is not None else ""


def exit_code() -> int:
    """The shell's convention for a command ended by a signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return 128 + (_signum if _signum is not None else signal.SIGINT)


def on_signal(listener: Callable[[bool], bool]) -> Callable[[], None]:
    """Call ``listener(at_once)`` on each stop signal during ``graceful()``; returns a function that removes it.

    ``at_once`` is False for the first signal (stop at the next checkpoint) and True after
    that. The listener returns True when it stopped its jobs itself (so no exception is needed).
    """
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def _handle(signum: int, frame: object) -> None:
    global _count, _signum
    _count += 1
    _signum = _signum or signum
    if not _graceful or not _listeners:  # nothing can stop gracefully (no launch yet; Ray, Slurm's wait)
        raise KeyboardInterrupt
    at_once = _count > 1
    handled = [listener(at_once) for listener in list(_listeners)]
    if at_once and (_count > 2 or not any(handled)):
        raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT and SIGTERM through this module (main thread only)."""
    reset()
    for sig in SIGNALS:
        signal.signal(sig, _handle)


def reset() -> None:
    global _count, _signum
    _count, _signum = 0, None


@contextmanager
def graceful() -> Iterator[None]:
    """Within the block, the first signal asks the running jobs to stop at their next checkpoint."""
    global _graceful
    _graceful = True
    try:
        yield
    finally:
        _graceful = False
