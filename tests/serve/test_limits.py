"""The gate that bounds work, and the body reader that bounds uploads."""

from __future__ import annotations

import threading

import anyio
import pytest

from cnnlab.serve.limits import Gate, HTTPProblem, Limits, read_body


def test_gate_runs_at_most_running_and_refuses_past_waiting():
    gate = Gate(1, 1, "test")
    release = threading.Event()
    started = threading.Event()
    outcomes: list[str] = []

    def blocker() -> str:
        started.set()
        release.wait(60)
        return "done"

    async def main():
        async with anyio.create_task_group() as tg:
            async def job(name):
                try:
                    outcomes.append(await gate.run(blocker))
                except HTTPProblem as e:
                    outcomes.append(f"{e.status}")

            tg.start_soon(job, "a")
            await anyio.to_thread.run_sync(started.wait)
            tg.start_soon(job, "b")  # queued behind a
            await anyio.sleep(0)
            while gate.admitted < 2:
                await anyio.sleep(0.01)
            with pytest.raises(HTTPProblem) as e:  # a third has no place
                await gate.run(blocker)
            assert e.value.status == 503 and "2 test jobs" in e.value.reason
            release.set()

    anyio.run(main)
    assert outcomes == ["done", "done"]
    assert gate.admitted == 0 and gate.peak == 2


async def _chunks(parts):
    for p in parts:
        yield p


async def _stalling(parts):
    for p in parts:
        yield p
    await anyio.sleep(3600)


def test_read_body_limits():
    async def main():
        assert await read_body(_chunks([b"ab", b"cd"]), limit=4, timeout_s=5, declared=4) == b"abcd"
        with pytest.raises(HTTPProblem) as e:
            await read_body(_chunks([b"ab"]), limit=4, timeout_s=5, declared=5)
        assert e.value.status == 413 and "5 bytes; the limit is 4 bytes" in e.value.reason
        with pytest.raises(HTTPProblem) as e:  # no Content-Length (chunked): counted while reading
            await read_body(_chunks([b"abc", b"de"]), limit=4, timeout_s=5, declared=None)
        assert e.value.status == 413
        with pytest.raises(HTTPProblem) as e:
            await read_body(_stalling([b"a"]), limit=4, timeout_s=0.2, declared=None)
        assert e.value.status == 408

    anyio.run(main)


def test_limits_are_checked():
    assert Limits().max_upload_bytes == 10 * 1024 * 1024
    with pytest.raises(ValueError, match="running"):
        Limits(running=0)
    with pytest.raises(ValueError, match="body_timeout_s"):
        Limits(body_timeout_s=0)
