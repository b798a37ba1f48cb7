package eventchain.example;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;

/**
 * Sends one event and exits: {@code OrderProducer TOPIC KEY VALUE}.
 *
 * <p>Prints {@code sent TOPIC PARTITION@OFFSET}. The agent's send span is the root of the chain.
 */
public final class OrderProducer {
    private OrderProducer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: OrderProducer TOPIC KEY VALUE");
            System.exit(2);
        }
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(Config.producer("java-order-producer"))) {
            RecordMetadata sent = producer.send(new ProducerRecord<>(args[0], args[1], args[2])).get();
            System.out.printf("sent %s %d@%d%n", sent.topic(), sent.partition(), sent.offset());
        }
    }
}
