"""A fake LLM provider server for tests: OpenAI, Azure OpenAI, Anthropic, Gemini and Cohere wire
formats, scripted per model or per request, with a timeline of every request's connection.

    from salvo.testing import Behavior, FakeProvider

    async with FakeProvider() as fake:
        fake.script("gpt-4o-mini", Behavior(latency=0.05, text="hi there"))
        fake.script("flaky", [Behavior(status=429, headers={"retry-after": "0"}), Behavior()])
        ...                                  # point a client at fake.openai_base, fake.url, ...
        record = fake.records_for("gpt-4o-mini")[0]
        await fake.wait_until_closed(record)  # returns once the client closed or the answer ended
        assert record.disconnected is not None

The fake writes the wire JSON itself from the providers' documented formats and imports nothing
from the rest of salvo, so a mistake in salvo's adapters cannot be mirrored here.

`Behavior` fields (all optional):

- ``latency``: seconds before the response headers (and the whole body, when not streaming);
  ``first_chunk_delay``: streams, after the headers and before the first event;
  ``chunk_interval``: seconds between stream events.
- ``status``: a non-2xx answers with the provider's own error JSON, its request-id header and,
  on 429, its rate-limit headers; ``error_message`` / ``error_code`` / ``error_type`` override
  parts of that body; ``headers``: extra response headers (``retry-after``, ``x-should-retry``).
- ``text`` (default: "Hello from <model>. This is a scripted answer."), ``chunks`` (stream pieces),
  ``tool_calls`` (a list of `ToolCallSpec`), ``finish_reason`` (provider-native),
  ``prompt_tokens`` / ``completion_tokens`` (default: word counts).
- ``fault`` with ``fault_after`` / ``stall_s``: see `salvo.testing._faults`.
- ``sse_line_ending`` ("\\n", "\\r\\n" or "\\r"; None: the format's own, CRLF for Gemini),
  ``sse_comments`` (``: keep-alive`` before each event), ``split_writes`` (each event in two
  writes split mid-line), ``include_usage`` (OpenAI streams: force the usage chunk on or off).

Google's batch and cloud surfaces are served too (see each module): the Gemini Files API and
Batch Mode (`_gemini_files`, `_gemini_batches`), Vertex AI ``generateContent`` and
``batchPredictionJobs`` (`_vertex`), an OAuth token endpoint at ``/token`` that checks RS256
service-account assertions (`_google_oauth`), and a Cloud Storage JSON API subset (`_gcs`; point
``STORAGE_EMULATOR_HOST`` at ``fake.url``).
Batch APIs: OpenAI's and Azure's files and batches, Anthropic's message batches (`_batches`,
``batches_of(fake)``), Mistral's files and batch jobs at ``fake.mistral_base`` (the official
client: ``fake.mistral_server``), Together's at ``fake.together_base`` and Groq's at
``fake.groq_base`` (`_jobs`, ``jobs_of(fake, "mistral")``). Nothing moves on its own: a test
advances the batches' clock (``.advance()``, ``.auto_advance``; ``/_fake/batches/advance`` and
``/_fake/jobs/{provider}/advance`` from another process).

A request header ``x-fake-behavior: <Behavior as a JSON object>`` overrides the script for that
request. ``python -m salvo.testing --port N`` serves the fake from another process.
"""

from ._behavior import Behavior as Behavior
from ._behavior import ToolCallSpec as ToolCallSpec
from ._records import Record as Record
from ._server import FakeProvider as FakeProvider

__all__ = ["Behavior", "FakeProvider", "Record", "ToolCallSpec"]
