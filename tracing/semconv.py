"""Attribute names of the OpenTelemetry messaging conventions (Kafka), in one place.

Shared by the write side (spans we record) and the read side (spans we interpret).
"""

SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"

SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION_NAME = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
CONSUMER_GROUP = "messaging.consumer.group.name"
CLIENT_ID = "messaging.client.id"
MESSAGE_ID = "messaging.message.id"
BODY_SIZE = "messaging.message.body.size"
BATCH_COUNT = "messaging.batch.message_count"
KAFKA_OFFSET = "messaging.kafka.offset"
KAFKA_KEY = "messaging.kafka.message.key"
KAFKA_TOMBSTONE = "messaging.kafka.message.tombstone"
RABBITMQ_ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"
RABBITMQ_DELIVERY_TAG = "messaging.rabbitmq.message.delivery_tag"
SUBSCRIPTION_NAME = "messaging.destination.subscription.name"
# Not in the conventions (ours): a RabbitMQ delivery's redelivered flag, a publisher confirm's answer.
RABBITMQ_REDELIVERED = "rabbitmq.message.redelivered"
RABBITMQ_CONFIRM = "rabbitmq.publish.confirm"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
# Not in the conventions: the OpenTelemetry Java agent's experimental attribute for the
# time between the record's timestamp and the start of its processing.
QUEUE_TIME_MS = "kafka.record.queue_time_ms"
# Ours: the ">"-joined topics a message's event chain went through (see eventchain.chain.duration).
CHAIN_PATH = "eventchain.path"

# Read side: older names that other instrumentations still emit (newest names above win), and the
# resource and exception attributes eventchain reads.
OPERATION_LEGACY = "messaging.operation"
DESTINATION_LEGACY = "messaging.destination"
KAFKA_CONSUMER_GROUP_LEGACY = "messaging.kafka.consumer.group"
KAFKA_CONSUMER_GROUP_OLD = "messaging.kafka.consumer_group"
KAFKA_PARTITION_LEGACY = "messaging.kafka.destination.partition"
KAFKA_PARTITION_OLD = "messaging.kafka.partition"
KAFKA_OFFSET_LEGACY = "messaging.kafka.message.offset"
CLIENT_ID_LEGACY = "messaging.client_id"
SERVICE_NAME = "service.name"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
# Read side (`eventchain audit`): where a service records the type of the event it handles, newest
# name first: the CloudEvents conventions' attribute, then the demo services' own.
CLOUDEVENTS_EVENT_TYPE = "cloudevents.event_type"
APP_EVENT_TYPE = "app.event.type"
