package eventchain.example;

import java.util.Properties;

/** Client settings shared by the two services: plain kafka-clients, nothing about tracing. */
final class Config {
    private Config() {}

    static String bootstrap() {
        String value = System.getenv("KAFKA_BOOTSTRAP");
        return value == null || value.isEmpty() ? "127.0.0.1:19092" : value;
    }

    static Properties producer(String clientId) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap());
        props.put("client.id", clientId);
        props.put("acks", "all");
        props.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        props.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        return props;
    }

    static Properties consumer(String clientId, String group) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap());
        props.put("client.id", clientId);
        props.put("group.id", group);
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        props.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        return props;
    }
}
