"""A Kafka application that must not notice a rolling restart or an upgrade.

    producer.py produce BOOTSTRAP TOPIC STATE STOP
        Creates TOPIC (3 partitions, replication factor 3, min.insync.replicas=2)
        if it does not exist, then produces numbered records with acks=all and
        idempotence until the file STOP exists. Every acknowledged record goes
        into STATE (JSON lines); exits 1 if any delivery failed or the client
        reported a fatal error.

    producer.py check BOOTSTRAP TOPIC STATE...
        Reads TOPIC from the beginning to its end and exits 1 unless every
        record acknowledged in the STATE files is there exactly once, at the
        partition and offset it was acknowledged at.

Run with the test venv's Python (confluent-kafka, librdkafka).
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(
        topic,
        num_partitions=PARTITIONS,
        replication_factor=3,
        config={"min.insync.replicas": "2"},
    )
    for name, future in admin.create_topics([new], operation_timeout=30).items():
        try:
            future.result()
            print(f"producer: created {name}", flush=True)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def produce(bootstrap, topic, state_path, stop_path):
    create_topic(bootstrap, topic)
    failures = []
    fatal = []
    notices = []
    acked = 0
    state = open(state_path, "a", encoding="utf-8", buffering=1)

    def on_error(err):
        # Non-fatal errors are librdkafka telling the application that a broker
        # connection went down; it reconnects and retries by itself.
        if err.fatal():
            fatal.append(str(err))
        else:
            notices.append(str(err))

    def on_delivery(err, msg):
        nonlocal acked
        if err is not None:
            failures.append(f"{msg.value()!r}: {err}")
            return
        acked += 1
        state.write(
            json.dumps(
                {"p": msg.partition(), "o": msg.offset(), "v": msg.value().decode()}
            )
            + "\n"
        )

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "error_cb": on_error,
        }
    )
    run = f"{os.getpid()}-{int(time.time())}"
    seq = 0
    started = time.monotonic()
    while not os.path.exists(stop_path):
        producer.produce(topic, key=str(seq).encode(), value=f"{run}-{seq}".encode(),
                         on_delivery=on_delivery)
        seq += 1
        producer.poll(0.002)
    left = producer.flush(120)
    state.close()
    seconds = time.monotonic() - started
    print(
        f"producer: {seq} sent, {acked} acknowledged, {len(failures)} failed, "
        f"{left} unanswered in {seconds:.0f} s; {len(notices)} connection notices",
        flush=True,
    )
    for n in notices[:10]:
        print(f"producer: notice: {n}", flush=True)
    for f in failures[:10]:
        print(f"producer: FAILED delivery: {f}", flush=True)
    for f in fatal:
        print(f"producer: FATAL: {f}", flush=True)
    if failures or fatal or left or acked != seq or acked == 0:
        return 1
    return 0


def check(bootstrap, topic, state_paths):
    want = {}
    for path in state_paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                want[(r["p"], r["o"])] = r["v"]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    ends = {}
    for p in range(PARTITIONS):
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = {}
    seen_values = {}
    done = set(p for p, high in ends.items() if high == 0)
    deadline = time.monotonic() + 120
    while len(done) < PARTITIONS and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if msg.offset() >= ends[msg.partition()]:
                    done.add(msg.partition())
                continue
            raise KafkaException(msg.error())
        value = msg.value().decode()
        got[(msg.partition(), msg.offset())] = value
        seen_values[value] = seen_values.get(value, 0) + 1
        if msg.offset() + 1 >= ends[msg.partition()]:
            done.add(msg.partition())
    consumer.close()
    missing = [(k, v) for k, v in want.items() if got.get(k) != v]
    duplicates = [v for v, n in seen_values.items() if n > 1]
    print(
        f"check: {len(want)} acknowledged, {len(got)} read up to the end offsets "
        f"{ends}, {len(missing)} missing or moved, {len(duplicates)} duplicated",
        flush=True,
    )
    for (p, o), v in missing[:10]:
        print(f"check: MISSING {v} acknowledged at partition {p} offset {o}; "
              f"read there: {got.get((p, o))}", flush=True)
    for v in duplicates[:10]:
        print(f"check: DUPLICATE {v}", flush=True)
    if len(done) < PARTITIONS:
        print(f"check: did not reach the end of partitions {set(ends) - done}", flush=True)
        return 1
    return 1 if missing or duplicates or not want else 0


def main(argv):
    if len(argv) == 6 and argv[1] == "produce":
        return produce(argv[2], argv[3], argv[4], argv[5])
    if len(argv) >= 5 and argv[1] == "check":
        return check(argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
