"""Public usage, checked by mypy (strict) in `make test`: the API's types are part of the API.

Never executed; pytest does not collect it (no test functions).
"""

from __future__ import annotations

import salvo
from salvo.testing import Behavior, FakeProvider, Record

MSGS = [{"role": "user", "content": "hi"}]


async def single() -> str | None:
    resp: salvo.ModelResponse = await salvo.acompletion("openai/gpt-4o-mini", MSGS)
    usage: salvo.Usage | None = resp.usage
    _ = usage.total_tokens if usage else 0
    cost: float | None = resp.cost_usd
    _ = cost
    return resp.content


async def streaming() -> list[str]:
    stream: salvo.CompletionStream = await salvo.acompletion("openai/x", MSGS, stream=True)
    out: list[str] = []
    async with stream:
        async for chunk in stream:
            chunk_typed: salvo.ChatCompletionChunk = chunk
            for choice in chunk_typed.choices:
                if choice.delta.content:
                    out.append(choice.delta.content)
    return out


async def fan_out() -> None:
    results: list[salvo.ModelResponse | salvo.SalvoError] = await salvo.abatch_completion(
        "openai/x", [MSGS, MSGS], max_concurrency=4
    )
    for r in results:
        if isinstance(r, salvo.ProviderError):
            status: int = r.status_code
            _ = status
    try:
        await salvo.arace("openai/a, openai/b", MSGS)
    except salvo.AllModelsFailedError as group:
        errors: tuple[Exception, ...] = group.exceptions
        _ = errors
    everything = await salvo.agather_all(["openai/a", "openai/b"], MSGS)
    _ = everything


async def racing() -> float | None:
    async with salvo.Client(hedge_budget=0.1, hedge_delay=0.5, budget_usd=5.0) as client:
        resp: salvo.ModelResponse = await client.arace(["a", "b"], MSGS, hedge="p95")
        report: salvo.RaceReport | None = resp.race
        stream: salvo.CompletionStream = await client.arace(["a", "b"], MSGS, stream=True)
        later: salvo.RaceReport | None = stream.race
        firsts: list[salvo.ModelResponse] = await salvo.afirst_k(["a", "b"], MSGS, 2)
        if firsts[0].race is not None:
            entry: salvo.ContenderReport = firsts[0].race.contenders[0]
            _ = entry.outcome, entry.cost_usd, entry.estimated
        _ = (report, later)
        budget: salvo.Budget = salvo.LocalBudget(1.0)
        _ = budget
        spent: float | None = client.spent_usd
        return spent


async def with_client() -> salvo.ClientStatistics:
    async with salvo.Client(config={"model_list": []}, timeout=30.0, max_retries=1) as client:
        await client.acompletion("openai/x", MSGS, temperature=0.2)
        vecs: salvo.EmbeddingResponse = await client.aembedding("openai/e", ["a"])
        _ = vecs.data[0].embedding
        return client.statistics()


async def fake_server() -> Record:
    async with FakeProvider() as fake:
        fake.script("m", Behavior(latency=0.1))
        fake.script("n", [Behavior(status=429), Behavior()])
        url: str = fake.openai_base
        _ = url
        return await fake.wait_until_closed(fake.records_for("m")[0])


def sync() -> None:
    r: salvo.ModelResponse = salvo.completion("openai/x", MSGS)
    w: salvo.ModelResponse = salvo.batch_completion_models(["openai/a", "openai/b"], MSGS)
    _ = (r, w)


async def the_seam() -> list[str]:
    async with salvo.Client(max_body_bytes=1 << 20, max_event_bytes=1 << 16) as client:
        route: salvo.Route = client.route("openai/gpt-4o-mini", {"timeout": 5})
        req = salvo.HTTPRequest("GET", "http://127.0.0.1:1/v1/models", route.dep.headers, b"")
        resp: salvo.Response = await client.send(req, route)
        _ = (resp.status, resp.headers.get("content-type"), resp.content, resp.json())

        async def ids(r: salvo.Response) -> list[str]:
            return [m["id"] for m in r.json()["data"]]

        names: list[str] = await client.send(req, route, accept=ids, tokens=10)
        streamed = salvo.HTTPRequest("POST", req.url, route.dep.headers, lambda: b"{}")
        stream: salvo.ResponseStream = await client.send(streamed, route, stream=True)
        async with stream:
            async for piece in stream:
                _b: bytes = piece

        async def first(s: salvo.ResponseStream) -> bytes:
            return await s.read()

        head: bytes = await client.send(req, route, stream=True, accept=first, deadline=None)
        _ = head
        return names
