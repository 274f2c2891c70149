"""Helper threads that leave Ctrl-C and SIGTERM to the main thread: `start` and `pool` make
them; `wait`, `wait_all` and `result` are the main thread's waits for them, `settle` its
wait for tasks that no signal cuts short.

Python runs a signal's handler (KeyboardInterrupt for Ctrl-C, `Terminated` for SIGTERM) in
the main thread only, but the kernel hands a process's signal to any of its threads that
does not block it. One that lands on a helper thread only sets a flag, which the main
thread reads when it next runs Python code: a main thread asleep in a wait for that helper
(an extract waiting for a shard read ahead, itself waiting for a lock on its server) slept
on, and the signal was lost. Found as a CI failure, once in some 300 runs; sending SIGINT
to the read-ahead thread's own id hung the extract every time. Threads made here block
both signals from their start, so the kernel hands them to the main thread.

Threads that libraries start (pyarrow's pools) do not block them: `wait`, `wait_all` and
`result`, the main thread's waits for a helper that may wait on a server, wake every SLICE
seconds, so a signal handed to one of those is still acted on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

TERMINATION = frozenset({signal.SIGINT, signal.SIGTERM})
SLICE = 0.2  # seconds; how late, at worst, a signal handed to a library's thread is seen


def block_signals() -> None:
    """Block Ctrl-C and SIGTERM in the calling thread (the main thread keeps them)."""
    if threading.current_thread() is not threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION)


@contextlib.contextmanager
def _blocked_while_starting() -> Iterator[None]:
    """A thread starts with its starter's signal mask: block both signals here while it
    starts, so it never has them unblocked. One that comes meanwhile waits, pending, and is
    handed to the main thread when the mask is put back."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start(
    target: Callable[..., object], *args: Any, name: str, daemon: bool = True
) -> threading.Thread:
    """A started thread running `target(*args)`, with Ctrl-C and SIGTERM blocked."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=daemon)
    with _blocked_while_starting():
        thread.start()
    return thread


def pool(max_workers: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads block Ctrl-C and SIGTERM (from their first task on: the
    pool starts them as tasks come, from whichever thread submits them)."""
    return ThreadPoolExecutor(max_workers, thread_name_prefix=name, initializer=block_signals)


def settle(futures: Collection[Future[Any]]) -> None:
    """Wait until each of `futures` is done, however many signals come meanwhile; the first
    is raised once they are. An interrupt that cut the wait short let the caller close what
    a task was still writing into (a Parquet writer closed under its encoder: a file whose
    columns disagreed, once a crash, "pure virtual method called"). Not a thread's join: a
    signal in `Thread.join` marks the thread stopped while it runs (Python 3.11's bpo-45274
    clean-up), and every later join returns at once."""
    late: BaseException | None = None
    while True:
        try:
            concurrent.futures.wait(futures)
            break
        except BaseException as exc:  # KeyboardInterrupt, Terminated
            late = late or exc
    if late is not None:
        raise late


def wait(event: threading.Event) -> None:
    """Wait until `event` is set, waking every SLICE seconds: a signal handed to a thread
    that does not block it (a library's) is acted on by the main thread within a slice,
    where an endless wait would sleep through it."""
    while not event.wait(SLICE):
        pass


def wait_all(futures: Collection[Future[Any]], timeout: float | None = None) -> set[Future[Any]]:
    """concurrent.futures.wait for all of `futures` (the ones done, once all are or `timeout`
    seconds have passed), waking every SLICE seconds as `wait` does."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE if end is None else max(0.0, min(SLICE, end - time.monotonic()))
        done, pending = concurrent.futures.wait(futures, left)
        if not pending or (end is not None and time.monotonic() >= end):
            return done


def result(future: Future[T]) -> T:
    """`future.result()`, waking every SLICE seconds as `wait` does. (Not result(SLICE) in a
    loop: the TimeoutError of a wait and one the task raised would look the same.)"""
    wait_all([future])
    return future.result()
