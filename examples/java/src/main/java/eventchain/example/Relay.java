package eventchain.example;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * Consumes events and sends one event on for each: {@code Relay IN_TOPIC GROUP OUT_TOPIC COUNT TIMEOUT_S}.
 *
 * <p>Exits after COUNT events (status 0) or when TIMEOUT_S seconds pass first (status 1). The send
 * happens while the record is being handled inside the loop over the polled records, so the agent
 * makes it a child of that record's process span: the chain goes on in the same trace.
 */
public final class Relay {
    private Relay() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: Relay IN_TOPIC GROUP OUT_TOPIC COUNT TIMEOUT_S");
            System.exit(2);
        }
        String in = args[0];
        String group = args[1];
        String out = args[2];
        int wanted = Integer.parseInt(args[3]);
        Instant deadline = Instant.now().plusSeconds(Long.parseLong(args[4]));
        int handled = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(Config.consumer("java-relay", group));
                KafkaProducer<String, String> producer = new KafkaProducer<>(Config.producer("java-relay"))) {
            consumer.subscribe(List.of(in));
            while (handled < wanted && Instant.now().isBefore(deadline)) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> record : records) {
                    String value = record.value() + " relayed";
                    producer.send(new ProducerRecord<>(out, record.key(), value)).get();
                    System.out.printf("relayed %s %d@%d -> %s%n", record.topic(), record.partition(), record.offset(), out);
                    handled++;
                }
                consumer.commitSync();
            }
        }
        if (handled < wanted) {
            System.err.printf("Relay: %d of %d events from %s before the timeout%n", handled, wanted, in);
            System.exit(1);
        }
    }
}
