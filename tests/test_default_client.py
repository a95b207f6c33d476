"""The module-level functions and sync wrappers in a fresh interpreter, with every warning an
error: the default client must be closed at loop shutdown without 'Unclosed' warnings."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT_ASYNC = textwrap.dedent(
    """
    import asyncio, gc, salvo
    from salvo.testing import FakeProvider, Behavior

    async def main():
        async with FakeProvider() as fake:
            fake.script("fast", Behavior(latency=0.01, text="F"))
            fake.script("slow", Behavior(latency=2.0))
            kw = dict(api_base=fake.openai_base, api_key="k")
            r = await salvo.acompletion("openai/fast", [{"role": "user", "content": "hi"}], **kw)
            w = await salvo.arace(["openai/slow", "openai/fast"],
                                  [{"role": "user", "content": "hi"}], **kw)
            b = await salvo.abatch_completion("openai/fast",
                                              [[{"role": "user", "content": "x"}]] * 5, **kw)
            print(r.content, w.content, len(b))

    asyncio.run(main())
    gc.collect()
    """
)

SCRIPT_SYNC = textwrap.dedent(
    """
    import asyncio, threading, salvo
    from salvo.testing import FakeProvider, Behavior

    ready = threading.Event()
    box = {}

    def serve():
        async def run():
            async with FakeProvider() as fake:
                fake.script("fast", Behavior(latency=0.01, text="F"))
                fake.script("slow", Behavior(latency=2.0, text="S"))
                box["base"] = fake.openai_base
                box["stop"] = asyncio.Event()
                ready.set()
                await box["stop"].wait()
        box["loop"] = asyncio.new_event_loop()
        box["loop"].run_until_complete(run())
        box["loop"].close()

    t = threading.Thread(target=serve)
    t.start()
    ready.wait()
    kw = dict(api_base=box["base"], api_key="k")
    msgs = [{"role": "user", "content": "hi"}]
    print(salvo.completion("openai/fast", msgs, **kw).content)
    print(salvo.batch_completion_models(["openai/slow", "openai/fast"], msgs, **kw).content)
    print(len(salvo.batch_completion("openai/fast", [msgs] * 3, **kw)))
    print([r.content for r in salvo.batch_completion_models_all_responses(
        "openai/fast, openai/slow", msgs, **kw)])
    box["loop"].call_soon_threadsafe(box["stop"].set)
    t.join()
    """
)


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_module_functions_close_default_client_cleanly() -> None:
    proc = run(SCRIPT_ASYNC)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["F", "F", "5"]
    assert "Unclosed" not in proc.stderr and "never awaited" not in proc.stderr
    assert proc.stderr == ""


def test_sync_wrappers_from_a_script() -> None:
    proc = run(SCRIPT_SYNC)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["F", "F", "3", "['F', 'S']"]
    assert proc.stderr == ""
