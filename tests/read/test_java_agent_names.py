"""eventchain reads the OpenTelemetry Java agent's default (pre-stable) messaging names."""

from tracing.read import make_chain
from tracing.read.analyse import summarise
from tracing.read.model import Span
from tracing.read.render import to_json

TRACE = "5b8efff798038103d269b633813fc60c"


def agent_span(span_id, parent, name, kind, service, start_ms, end_ms, **attributes):
    return Span(
        TRACE, span_id, parent, name, kind, service, start_ms * 1_000_000, end_ms * 1_000_000, attributes
    )


def agent_chain():
    publish = agent_span(
        "a" * 16,
        None,
        "orders publish",
        "producer",
        "java-orders",
        0,
        4,
        **{
            "messaging.system": "kafka",
            "messaging.operation": "publish",
            "messaging.client_id": "producer-1",
            "messaging.destination.partition.id": "2",
            "messaging.kafka.message.offset": 17,
        },
    )
    process = agent_span(
        "b" * 16,
        "a" * 16,
        "orders process",
        "consumer",
        "java-billing",
        10,
        12,
        **{
            "messaging.system": "kafka",
            "messaging.operation": "process",
            "messaging.client_id": "consumer-billing-1",
            "messaging.destination.name": "orders",
            "messaging.destination.partition.id": "2",
            "messaging.kafka.message.offset": 17,
            "messaging.kafka.consumer.group": "billing",
        },
    )
    return make_chain([publish, process], TRACE)


def test_the_agents_default_names_give_role_topic_group_partition_offset_and_client_id():
    chain = agent_chain()
    [node] = chain.root.children
    send, process = chain.root.span, node.span
    assert (send.role, send.topic, send.partition, send.offset, send.client_id) == (
        "send",
        "orders",
        2,
        17,
        "producer-1",
    )
    assert (process.role, process.topic, process.consumer_group, process.partition, process.offset) == (
        "process",
        "orders",
        "billing",
        2,
        17,
    )
    assert process.client_id == "consumer-billing-1"
    assert node.queue_ms == 6.0


def test_json_nodes_carry_the_client_id():
    chain = agent_chain()
    doc = to_json(chain, summarise(chain))
    assert doc["root"]["client_id"] == "producer-1"
    assert doc["root"]["children"][0]["client_id"] == "consumer-billing-1"
