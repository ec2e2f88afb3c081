"""One generation at a time per model: a slot, a bounded waiting line, and "busy" beyond it.

``acquire`` returns as soon as the slot is free or handed over (first come, first served), returns False if
the client gave up (its ``stop`` event fired) while waiting, and raises :class:`SlotBusy` when the waiting
line is full. ``release`` hands the slot straight to the first waiter, so nobody can slip in between.
"""

from __future__ import annotations

import asyncio
import collections


class SlotBusy(RuntimeError):
    """The model is generating for someone and the waiting line is full."""


class GenerationSlot:
    """An asyncio slot for one generation with at most ``max_waiting`` clients queued."""

    def __init__(self, max_waiting: int = 1):
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.max_waiting = max_waiting
        self.busy = False
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, stop: asyncio.Event, on_queued=None) -> bool:
        """Take the slot (True), give up when ``stop`` is set while waiting (False), or raise :class:`SlotBusy`.
        ``on_queued(position)`` is awaited once when the client has to wait (position 1 = next)."""
        if not self.busy:
            self.busy = True
            return True
        if len(self._waiters) >= self.max_waiting:
            raise SlotBusy(
                f"the model is generating for another client and {len(self._waiters)} more are waiting; "
                "try again in a moment"
            )
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        if on_queued is not None:
            await on_queued(len(self._waiters))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({turn, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if turn.done() and not turn.cancelled():
            return True  # handed over (even if stop fired at the same time: the caller releases it)
        self._waiters.remove(turn)
        turn.cancel()
        return False

    def release(self) -> None:
        """Hand the slot to the first waiter still waiting, or free it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self.busy = False
