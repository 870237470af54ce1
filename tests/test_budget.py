import asyncio
import threading
import time

import pytest
from django.db import OperationalError

from django_realtime.budget import FREE, Budget, cost
from django_realtime.eventlog import Item


def test_the_budget_lends_up_to_its_total_and_what_is_given_back():
    budget = Budget(100)
    assert budget.try_take(60)
    assert not budget.try_take(50), "past the total: nothing lent"
    assert budget.lent == 60
    budget.give(60)
    assert budget.try_take(100)


def test_what_is_lent_adds_up():
    budget = Budget(100)
    assert budget.try_take(30) and budget.try_take(30)
    assert budget.lent == 60
    assert not budget.try_take(50)
    budget.take(40, timeout=0)
    assert budget.lent == 100


def test_an_amount_above_the_whole_budget_is_lent_once_nothing_else_is():
    budget = Budget(100)
    assert budget.try_take(1000) and budget.lent == 100
    budget.give(1000)
    assert budget.lent == 0


def test_take_waits_for_bytes_given_back_and_raises_past_its_timeout():
    budget = Budget(100)
    budget.take(100, timeout=0)
    threading.Timer(0.1, budget.give, args=(50,)).start()
    started = time.monotonic()
    budget.take(50, timeout=5)
    assert 0.05 < time.monotonic() - started < 2
    with pytest.raises(OperationalError, match=r"within 0.05 s: CATCH_UP_MEMORY \(100 bytes\) is lent"):
        budget.take(1, timeout=0.05)


def test_atake_waits_on_asyncio_too():
    budget = Budget(100)
    budget.take(100, timeout=0)

    async def main():
        asyncio.get_running_loop().call_later(0.1, budget.give, 100)
        await budget.atake(100, timeout=5)
        with pytest.raises(OperationalError, match=r"CATCH_UP_MEMORY \(100 bytes\) is lent to other streams"):
            await budget.atake(1, timeout=0.05)

    asyncio.run(main())
    assert budget.lent == 100


def test_small_pieces_are_free_and_large_ones_pay_their_data():
    small = Item(1, "c", "message", "x" * FREE)
    assert cost([]) == 0 and cost([small]) == 0
    assert cost([small, small]) == 2 * FREE
