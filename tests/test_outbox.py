import asyncio

from django_realtime.websocket.outbox import Outbox

# Outbox -----------------------------------------------------------------------


def test_outbox_is_first_in_first_out_and_counts_characters():
    async def main():
        outbox = Outbox(10)
        assert outbox.put_nowait("abc") and outbox.put_nowait("defg")
        assert (len(outbox), outbox.size) == (2, 7)
        assert [await outbox.get(), await outbox.get()] == ["abc", "defg"]
        assert (len(outbox), outbox.size) == (0, 0)

    asyncio.run(main())


def test_outbox_refuses_what_would_take_it_over_its_limit_but_always_takes_one_frame():
    outbox = Outbox(10)
    assert outbox.put_nowait("x" * 25), "an empty outbox takes a frame of any size"
    assert not outbox.put_nowait("y")
    outbox = Outbox(10)
    assert outbox.put_nowait("x" * 6)
    assert not outbox.put_nowait("y" * 5)
    assert outbox.put_nowait("y" * 4)


def test_outbox_put_waits_for_room_and_get_waits_for_a_frame():
    async def main():
        outbox = Outbox(4)
        outbox.put_nowait("abcd")
        put = asyncio.create_task(outbox.put("efgh"))
        await asyncio.sleep(0)
        assert not put.done()
        assert await outbox.get() == "abcd"
        await asyncio.wait_for(put, 1)
        assert await outbox.get() == "efgh"
        get = asyncio.create_task(outbox.get())
        await asyncio.sleep(0)
        assert not get.done()
        outbox.put_nowait("z")
        assert await asyncio.wait_for(get, 1) == "z"

    asyncio.run(main())


def test_outbox_serves_waiting_producers_in_order_and_lets_no_new_frame_overtake_them():
    async def main():
        outbox = Outbox(10)
        outbox.put_nowait("a" * 8)
        big = asyncio.create_task(outbox.put("b" * 9))
        await asyncio.sleep(0)
        small = asyncio.create_task(outbox.put("c"))
        await asyncio.sleep(0)
        assert not outbox.put_nowait("d"), "a waiting producer goes first"
        assert await outbox.get() == "a" * 8
        await asyncio.wait_for(asyncio.gather(big, small), 1)
        assert [await outbox.get(), await outbox.get()] == ["b" * 9, "c"]
        assert outbox.put_nowait("d")

    asyncio.run(main())


# TokenBucket ------------------------------------------------------------------
