"""Helper threads leave Ctrl-C and SIGTERM to the main thread, and the main thread's wait
for one still acts on a signal that a library's thread took (pipeline.threads)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest

from pipeline import threads


def blocked_here() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_a_started_thread_blocks_both_signals_and_its_starter_keeps_them() -> None:
    seen: list[set[int]] = []
    threads.start(lambda: seen.append(blocked_here()), name="t").join()
    assert seen[0] >= threads.TERMINATION
    assert not threads.TERMINATION & blocked_here()


def test_a_pools_threads_block_both_signals() -> None:
    with threads.pool(2, "t") as pool:
        masks = [pool.submit(blocked_here).result() for _ in range(4)]
    assert all(mask >= threads.TERMINATION for mask in masks)
    assert not threads.TERMINATION & blocked_here()


class Handled(Exception):
    pass


@pytest.fixture
def usr1_raises() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise Handled()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def never_set(event: threading.Event) -> None:
    threads.wait(event)


def never_done(event: threading.Event) -> None:
    future: Future[None] = Future()  # nobody sets its result
    threads.result(future)


def never_all_done(event: threading.Event) -> None:
    threads.wait_all([Future(), Future()])


@pytest.mark.parametrize("waiting", [never_set, never_done, never_all_done])
def test_a_wait_acts_on_a_signal_another_thread_took_within_a_slice(
    usr1_raises: None, waiting: Callable[[threading.Event], None]
) -> None:
    # A thread that blocks nothing (as pyarrow's do) takes the signal: its handler can run
    # only in the main thread, which waits for what nobody will do.
    stop = threading.Event()
    taker = threading.Thread(target=stop.wait, daemon=True)
    taker.start()
    assert taker.ident is not None
    timer = threading.Timer(0.1, signal.pthread_kill, (taker.ident, signal.SIGUSR1))
    timer.start()
    began = time.monotonic()
    try:
        with pytest.raises(Handled):
            waiting(threading.Event())
    finally:
        stop.set()
        timer.cancel()
    assert time.monotonic() - began < 0.1 + threads.SLICE + 1


def test_wait_returns_once_the_event_is_set() -> None:
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    threads.wait(event)
    assert event.is_set()


def test_result_gives_the_tasks_value_or_its_error_even_a_timeout_of_its_own() -> None:
    def late() -> int:
        time.sleep(threads.SLICE * 2)
        return 7

    def timing_out() -> None:
        raise TimeoutError("the task's own")

    with threads.pool(2, "t") as pool:
        assert threads.result(pool.submit(late)) == 7
        with pytest.raises(TimeoutError, match="the task's own"):
            threads.result(pool.submit(timing_out))


def test_wait_all_returns_the_done_ones_at_its_timeout() -> None:
    done: Future[int] = Future()
    done.set_result(1)
    began = time.monotonic()
    assert threads.wait_all([done, Future()], timeout=threads.SLICE * 1.5) == {done}
    assert threads.SLICE * 1.5 <= time.monotonic() - began < threads.SLICE * 1.5 + 1


def test_settle_waits_for_the_task_however_many_signals_come(usr1_raises: None) -> None:
    """Signals in the main thread's wait do not cut it short (the caller would close what
    the task still writes into): the first is raised once the task is done."""
    done = threading.Event()

    def task() -> None:
        time.sleep(0.6)
        done.set()

    with threads.pool(1, "t") as pool:
        future = pool.submit(task)
        main = threading.main_thread().ident
        assert main is not None
        timers = [
            threading.Timer(d, signal.pthread_kill, (main, signal.SIGUSR1)) for d in (0.1, 0.3)
        ]
        for timer in timers:
            timer.start()
        with pytest.raises(Handled):
            threads.settle([future])
        assert done.is_set()
        for timer in timers:
            timer.join()
