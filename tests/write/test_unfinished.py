"""A message whose handling never finished is still recorded; what poll() returns on a
timeout or an error can go into process() as the README's snippets do."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import subprocess
import sys
import textwrap

from opentelemetry import context, trace
from opentelemetry.trace import StatusCode

from tests.write.conftest import poll_n
from tests.write.test_consumer import consumer_for, produce
from tracing import TracedConsumer


class _ErrorEvent:
    """What poll() returns for a client event: a message whose error() is set."""

    def error(self):
        return "_PARTITION_EOF"


def test_process_of_a_timeout_or_an_error_event_records_nothing_and_does_not_raise(spans):
    consumer = TracedConsumer(
        {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, tracer_provider=spans.provider
    )
    for msg in (None, _ErrorEvent()):
        with consumer.process(msg) as span:
            assert not span.is_recording()
    consumer.close()
    assert spans.finished() == []


def test_asyncio_process_of_a_timeout_records_nothing(spans):
    from tracing.aio import TracedAIOConsumer

    async def main():
        consumer = TracedAIOConsumer(
            {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, tracer_provider=spans.provider
        )
        async with consumer.process(None) as span:
            assert not span.is_recording()
        await consumer.close()

    asyncio.run(main())
    assert spans.finished() == []


def test_close_while_a_handler_exception_is_in_flight_ends_the_span_failed(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"order")
    consumer = consumer_for(spans, mock_cluster, topic)
    try:
        try:
            poll_n(consumer, 1)
            raise LookupError("no such order")  # the app's handler, in a drop-in poll loop
        finally:
            consumer.close()
    except LookupError:
        pass
    process = spans.one(f"process {topic}")
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes["error.type"] == "LookupError"


def test_a_consumer_collected_with_an_open_span_ends_it(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"order")
    consumer = consumer_for(spans, mock_cluster, topic)
    poll_n(consumer, 1)
    assert spans.named(f"process {topic}") == []  # open: it ends at the next poll
    consumer.wrapped.close()  # the app closed the client underneath, then dropped the wrapper
    del consumer
    gc.collect()
    process = spans.one(f"process {topic}")
    assert process.status.status_code is StatusCode.UNSET
    # The thread's context is the one from before the poll: no ended span stays current.
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_context_made_current_after_the_poll_survives_the_consumers_collection(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"order")

    def scenario() -> None:  # in a context of its own: what it leaves current stays there
        consumer = consumer_for(spans, mock_cluster, topic)
        poll_n(consumer, 1)
        mine = trace.NonRecordingSpan(trace.SpanContext(0xABC, 0xDEF, is_remote=False))
        token = context.attach(trace.set_span_in_context(mine))
        consumer.wrapped.close()
        del consumer
        gc.collect()
        assert spans.one(f"process {topic}").status.status_code is StatusCode.UNSET
        assert trace.get_current_span() is mine  # the app's own context is not undone
        context.detach(token)

    contextvars.copy_context().run(scenario)


def test_an_exception_that_ends_the_program_fails_the_open_span_at_exit(mock_cluster, topic):
    script = textwrap.dedent(
        f"""
        import json, sys
        from confluent_kafka import Producer, TopicPartition
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
        import tracing

        class Printed(SpanExporter):
            def export(self, spans):
                for s in spans:
                    print(json.dumps({{"name": s.name, "status": s.status.status_code.name,
                                      "error.type": s.attributes.get("error.type")}}), flush=True)
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Printed()))
        raw = Producer({{"bootstrap.servers": "{mock_cluster}"}})
        raw.produce("{topic}", b"order", partition=0)
        raw.flush(10)
        consumer = tracing.TracedConsumer(
            {{"bootstrap.servers": "{mock_cluster}", "group.id": "g", "auto.offset.reset": "earliest"}},
            tracer_provider=provider,
        )
        consumer.assign([TopicPartition("{topic}", 0, 0)])
        while True:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                print("handling", flush=True)
                raise KeyError("order-42")  # uncaught: the program ends here
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "KeyError" in out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "handling"
    import json

    assert [json.loads(line) for line in lines[1:]] == [
        {"name": f"process {topic}", "status": "ERROR", "error.type": "KeyError"}
    ]
