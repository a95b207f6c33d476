"""Item 14 of issue 11: one stale batch (its alias removed from the config) does not break
``GET /v1/batches``: the list shows what is stored, the stale one as the proxy last knew it,
and only an operation on that one object answers 410."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from salvo.proxy import ProxyServer
from salvo.testing import FakeProvider, _batches, _files
from salvo.testing._batches import batches_of
from test_proxy_support import MASTER_KEY, UPSTREAM_KEY, _jsonl


def _config(fake: FakeProvider, store: Path, *, with_nat: bool) -> dict[str, Any]:
    models = [
        {
            "model_name": "fast",
            "params": {
                "model": "openai/gpt-4o-mini",
                "api_base": fake.openai_base,
                "api_key": UPSTREAM_KEY,
                "batch": "local",
            },
        }
    ]
    if with_nat:
        models.append(
            {
                "model_name": "nat",
                "params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": fake.openai_base,
                    "api_key": UPSTREAM_KEY,
                    "batch": "native",
                },
            }
        )
    return {"model_list": models,
            "general_settings": {"master_key": MASTER_KEY, "files_dir": str(store)}}  # fmt: skip


async def _sdk(proxy: ProxyServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=MASTER_KEY, max_retries=0)


@pytest.mark.parametrize("stored_before_snapshots", [False, True])
async def test_a_batch_whose_alias_was_removed_is_listed_and_410_alone(
    tmp_path: Path, stored_before_snapshots: bool
) -> None:
    store = tmp_path / "store"
    async with FakeProvider(installers=[_files.install, _batches.install]) as fake:
        async with ProxyServer(_config(fake, store, with_nat=True)) as proxy:
            async with await _sdk(proxy) as oai:
                up = await oai.files.create(file=("a.jsonl", _jsonl("nat", 2)), purpose="batch")
                stale = await oai.batches.create(input_file_id=up.id,
                                                 endpoint="/v1/chat/completions",
                                                 completion_window="24h")  # fmt: skip
                batches_of(fake).advance(3)
                known = await oai.batches.retrieve(stale.id)
                assert known.status == "completed"
                up2 = await oai.files.create(file=("b.jsonl", _jsonl("fast", 1)), purpose="batch")
                fresh = await oai.batches.create(input_file_id=up2.id,
                                                 endpoint="/v1/chat/completions",
                                                 completion_window="24h")  # fmt: skip
        if stored_before_snapshots:  # a route table written by an older proxy: no snapshots
            import sqlite3

            with sqlite3.connect(store / "proxy.sqlite3") as db:
                db.execute("UPDATE batches SET last=NULL")
        async with ProxyServer(_config(fake, store, with_nat=False)) as proxy:
            async with await _sdk(proxy) as oai:
                listed = [b async for b in oai.batches.list(limit=1)]  # paginated, one a page
                assert [b.id for b in listed] == [fresh.id, stale.id]
                old = listed[1]
                if stored_before_snapshots:
                    assert old.status == "unknown" and old.created_at == stale.created_at
                else:
                    assert old.status == "completed"
                    assert old.request_counts is not None and old.request_counts.total == 2
                for call in (oai.batches.retrieve, oai.batches.cancel):
                    with pytest.raises(openai.APIStatusError) as info:
                        await call(stale.id)
                    assert info.value.status_code == 410
                    assert "'nat'" in str(info.value) and "no longer in the config" in str(
                        info.value
                    )
                assert (await oai.batches.retrieve(fresh.id)).id == fresh.id


async def test_a_batch_its_provider_no_longer_knows_is_listed_as_last_seen(
    tmp_path: Path,
) -> None:
    """The provider forgot one batch (404) and cannot be reached for nothing else: the list
    still answers, with that batch as the proxy last saw it."""
    store = tmp_path / "store"
    async with FakeProvider(installers=[_files.install, _batches.install]) as fake:
        async with ProxyServer(_config(fake, store, with_nat=True)) as proxy:
            async with await _sdk(proxy) as oai:
                up = await oai.files.create(file=("a.jsonl", _jsonl("nat", 2)), purpose="batch")
                made = await oai.batches.create(input_file_id=up.id,
                                                endpoint="/v1/chat/completions",
                                                completion_window="24h")  # fmt: skip
                batches_of(fake).batches.clear()  # the provider forgot it
                listed = [b async for b in oai.batches.list()]
                assert [b.id for b in listed] == [made.id]
                assert listed[0].status == made.status
                with pytest.raises(openai.NotFoundError):
                    await oai.batches.retrieve(made.id)
