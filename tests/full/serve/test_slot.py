"""GenerationSlot: one holder, a bounded first-come-first-served waiting line, busy beyond it, give-up."""

from __future__ import annotations

import asyncio

import pytest

from full.serve.slot import GenerationSlot, SlotBusy


def test_one_holder_a_bounded_queue_and_handover_in_order():
    async def scenario():
        slot, order, positions = GenerationSlot(max_waiting=2), [], []

        async def queued(p):
            positions.append(p)

        assert await slot.acquire(asyncio.Event())
        waiters = [asyncio.create_task(slot.acquire(asyncio.Event(), queued)) for _ in range(2)]
        for i, w in enumerate(waiters):
            w.add_done_callback(lambda _, i=i: order.append(i))
        await asyncio.sleep(0.01)
        with pytest.raises(SlotBusy, match="2 more are waiting"):
            await slot.acquire(asyncio.Event())
        slot.release()
        await asyncio.sleep(0.01)
        assert order == [0] and slot.busy and slot.waiting == 1
        slot.release()
        await asyncio.sleep(0.01)
        assert order == [0, 1] and all(w.result() for w in waiters)
        slot.release()
        assert not slot.busy and positions == [1, 2]

    asyncio.run(scenario())


def test_a_waiter_that_stops_leaves_the_queue():
    async def scenario():
        slot = GenerationSlot(max_waiting=1)
        await slot.acquire(asyncio.Event())
        stop = asyncio.Event()
        waiter = asyncio.create_task(slot.acquire(stop))
        await asyncio.sleep(0.01)
        stop.set()
        assert await waiter is False and slot.waiting == 0
        slot.release()
        assert not slot.busy

    asyncio.run(scenario())
    with pytest.raises(ValueError):
        GenerationSlot(max_waiting=-1)
