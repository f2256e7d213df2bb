"""The two Python Kafka clients people use, against a real Sluice broker:
confluent-kafka (librdkafka underneath) and kafka-python (pure Python, its own
protocol code, so it picks different request versions).

Sluice has no consumer groups yet: consumers assign partitions by hand and never
commit. Every wait below is bounded, so a broker that stops answering fails a test
instead of hanging it.
"""

import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
import kafka
import kafka.errors
from kafka.admin import ConfigResource as KpConfigResource, ConfigResourceType

from records import Record, TS0_MS, check_consumed, payloads

# Enough records for many batches per partition, few enough to stay quick.
ROUND_TRIP_RECORDS = 3000
PARTITIONS = 3
# librdkafka's admin calls wait this long for the broker.
ADMIN_TIMEOUT_S = 30
# The longest any test waits for records to arrive.
CONSUME_TIMEOUT_S = 60


# ---------------------------------------------------------------- confluent-kafka


def admin_client(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(admin, name, partitions=PARTITIONS, config=None):
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1, config=config or {})],
        operation_timeout=ADMIN_TIMEOUT_S,
        request_timeout=ADMIN_TIMEOUT_S,
    )
    assert futures[name].result(timeout=ADMIN_TIMEOUT_S) is None


def kafka_error(future):
    """The KafkaError a failed admin future carries; fails if it succeeded."""
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=ADMIN_TIMEOUT_S)
    return raised.value.args[0]


def confluent_produce(bootstrap, topic, sent_payloads, extra_config=None):
    """Produces every payload, waits for every delivery report and returns the
    Records with the partition and offset each report gave."""
    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        # Small batches so each partition gets many of them.
        "batch.size": 16384,
        "message.timeout.ms": CONSUME_TIMEOUT_S * 1000,
    }
    config.update(extra_config or {})
    producer = Producer(config)
    reports = [None] * len(sent_payloads)

    def on_delivery(index):
        def report(err, msg):
            reports[index] = (err, msg.partition(), msg.offset(), msg.timestamp())

        return report

    for i, p in enumerate(sent_payloads):
        while True:
            try:
                producer.produce(
                    topic,
                    key=p.key,
                    value=p.value,
                    headers=list(p.headers),
                    timestamp=p.timestamp_ms,
                    on_delivery=on_delivery(i),
                )
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain
        producer.poll(0)
    assert producer.flush(CONSUME_TIMEOUT_S) == 0, "records still undelivered"

    sent = []
    for i, (p, report) in enumerate(zip(sent_payloads, reports)):
        assert report is not None, f"no delivery report for record {i}"
        err, partition, offset, timestamp = report
        assert err is None, f"record {i} not delivered: {err}"
        assert timestamp == (TIMESTAMP_CREATE_TIME, p.timestamp_ms), f"record {i}"
        sent.append(Record(p.key, p.value, p.headers, p.timestamp_ms, partition, offset))
    return sent


def confluent_consumer(bootstrap):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # librdkafka wants a group id even for assign(); no group is joined and
            # nothing is committed.
            "group.id": f"assign-only-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
        }
    )


def confluent_consume(bootstrap, topic, partitions, count):
    """Reads `count` records from the start of every partition, then checks that the
    high watermarks say there are no more."""
    consumer = confluent_consumer(bootstrap)
    try:
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        got = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} consumed"
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    raise KafkaException(m.error())
                assert m.topic() == topic
                assert m.timestamp()[0] == TIMESTAMP_CREATE_TIME
                got.append(
                    Record(
                        m.key(),
                        m.value(),
                        tuple(m.headers() or ()),
                        m.timestamp()[1],
                        m.partition(),
                        m.offset(),
                    )
                )
        ends = {
            p: consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=ADMIN_TIMEOUT_S
            )
            for p in range(partitions)
        }
        return got, ends
    finally:
        consumer.close()


def check_watermarks(ends, per_partition):
    for p, offsets in per_partition.items():
        assert ends[p] == (0, len(offsets)), f"partition {p} watermarks {ends[p]}"


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_confluent_round_trip(bootstrap, topic_name, codec):
    topic = topic_name()
    create_topic(admin_client(bootstrap), topic)
    sent = confluent_produce(
        bootstrap,
        topic,
        payloads(ROUND_TRIP_RECORDS, "confluent"),
        {"compression.type": codec},
    )
    got, ends = confluent_consume(bootstrap, topic, PARTITIONS, len(sent))
    per_partition = check_consumed(sent, got, PARTITIONS)
    check_watermarks(ends, per_partition)


def test_confluent_idempotent_producer_writes_each_record_once_in_order(
    bootstrap, topic_name
):
    topic = topic_name()
    create_topic(admin_client(bootstrap), topic)
    count = 5000
    sent = confluent_produce(
        bootstrap,
        topic,
        payloads(count, "idempotent"),
        {
            "enable.idempotence": True,
            # Tiny batches and the most in-flight requests idempotence allows, so
            # the broker sees many sequence numbers per partition back to back.
            "batch.num.messages": 20,
            "max.in.flight.requests.per.connection": 5,
            "linger.ms": 1,
        },
    )
    got, ends = confluent_consume(bootstrap, topic, PARTITIONS, count)
    per_partition = check_consumed(sent, got, PARTITIONS)
    check_watermarks(ends, per_partition)
    # Exactly once and in the order sent: within each partition, the record numbers
    # rise with the offsets.
    seen = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        seen.setdefault(r.partition, []).append(int(r.key.removeprefix(b"key-")))
    for p, numbers in seen.items():
        assert numbers == sorted(numbers), f"partition {p} out of order"
    assert sorted(n for ns in seen.values() for n in ns) == list(range(count))


def test_confluent_offsets_for_times(bootstrap, topic_name):
    topic = topic_name()
    create_topic(admin_client(bootstrap), topic, partitions=1)
    # 10 batches of 10: a looked-up time inside a batch must give the record's own
    # offset, not its batch's base offset.
    step_ms = 10
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 50})
    for batch in range(10):
        for i in range(batch * 10, batch * 10 + 10):
            producer.produce(
                topic, key=str(i).encode(), value=b"v", partition=0,
                timestamp=TS0_MS + i * step_ms,
            )
        assert producer.flush(CONSUME_TIMEOUT_S) == 0

    def lookup(timestamp_ms):
        consumer = confluent_consumer(bootstrap)
        try:
            [tp] = consumer.offsets_for_times(
                [TopicPartition(topic, 0, timestamp_ms)], timeout=ADMIN_TIMEOUT_S
            )
        finally:
            consumer.close()
        assert tp.error is None, tp.error
        return tp.offset

    assert lookup(TS0_MS + 55 * step_ms) == 55  # an exact match
    assert lookup(TS0_MS + 55 * step_ms - 3) == 55  # the first record at or after
    assert lookup(TS0_MS + 40 * step_ms) == 40  # a batch's first record
    assert lookup(TS0_MS + 99 * step_ms) == 99  # the last record
    assert lookup(TS0_MS - 1_000_000) == 0  # before everything
    # After the newest record: no offset (-1, librdkafka's OFFSET_END).
    assert lookup(TS0_MS + 100 * step_ms) == -1
    assert lookup(int(time.time() * 1000) + 3_600_000) == -1


def test_confluent_topic_max_message_bytes_refuses_larger_batches(bootstrap, topic_name):
    topic = topic_name()
    create_topic(
        admin_client(bootstrap), topic, partitions=1, config={"max.message.bytes": "2000"}
    )
    # librdkafka does not know the topic's limit, so only the broker can refuse.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "none",
         "linger.ms": 0}
    )
    reports = {}

    def report(err, msg):
        reports[msg.key()] = (err, msg.offset())

    producer.produce(topic, key=b"small", value=b"s" * 500, on_delivery=report)
    assert producer.flush(CONSUME_TIMEOUT_S) == 0
    producer.produce(topic, key=b"large", value=b"l" * 5000, on_delivery=report)
    assert producer.flush(CONSUME_TIMEOUT_S) == 0
    producer.produce(topic, key=b"after", value=b"a" * 500, on_delivery=report)
    assert producer.flush(CONSUME_TIMEOUT_S) == 0

    assert reports[b"small"] == (None, 0)
    err, _ = reports[b"large"]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # The refused batch took no offset.
    assert reports[b"after"] == (None, 1)


def test_confluent_admin_create_describe_delete_topics(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    a, b = topic_name("a"), topic_name("b")
    futures = admin.create_topics(
        [NewTopic(a, 3, 1), NewTopic(b, 1, 1, config={"retention.ms": "3600000"})],
        operation_timeout=ADMIN_TIMEOUT_S,
    )
    assert {t: f.result(timeout=ADMIN_TIMEOUT_S) for t, f in futures.items()} == {
        a: None,
        b: None,
    }

    metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    assert {a, b} <= set(metadata.topics)
    broker_ids = set(metadata.brokers)
    assert len(broker_ids) == 1, metadata.brokers
    [broker_id] = broker_ids
    assert metadata.controller_id == broker_id
    for name, partitions in [(a, 3), (b, 1)]:
        topic = metadata.topics[name]
        assert topic.error is None, topic.error
        assert sorted(topic.partitions) == list(range(partitions))
        for p in topic.partitions.values():
            assert p.error is None, p.error
            assert (p.leader, p.replicas, p.isrs) == (broker_id, [broker_id], [broker_id])

    # The config given at creation is the topic's.
    configs = describe_topic_configs(admin, b)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default

    # Creating it again is refused, and changes nothing.
    again = admin.create_topics([NewTopic(a, 5, 1)], operation_timeout=ADMIN_TIMEOUT_S)
    assert kafka_error(again[a]).code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert len(admin.list_topics(a, timeout=ADMIN_TIMEOUT_S).topics[a].partitions) == 3

    # A replication factor this one-node cluster cannot meet is refused.
    c = topic_name("c")
    bad = admin.create_topics([NewTopic(c, 1, 3)], operation_timeout=ADMIN_TIMEOUT_S)
    assert kafka_error(bad[c]).code() == KafkaError.INVALID_REPLICATION_FACTOR

    # CreatePartitions grows a topic; shrinking is refused.
    grown = admin.create_partitions([NewPartitions(a, 5)], operation_timeout=ADMIN_TIMEOUT_S)
    assert grown[a].result(timeout=ADMIN_TIMEOUT_S) is None
    assert sorted(admin.list_topics(a, timeout=ADMIN_TIMEOUT_S).topics[a].partitions) == list(
        range(5)
    )
    shrunk = admin.create_partitions([NewPartitions(a, 2)], operation_timeout=ADMIN_TIMEOUT_S)
    assert kafka_error(shrunk[a]).code() == KafkaError.INVALID_PARTITIONS

    deleted = admin.delete_topics([a, b], operation_timeout=ADMIN_TIMEOUT_S)
    for f in deleted.values():
        assert f.result(timeout=ADMIN_TIMEOUT_S) is None
    remaining = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    assert a not in remaining and b not in remaining, remaining
    # Deleting what is gone is an error.
    gone = admin.delete_topics([a], operation_timeout=ADMIN_TIMEOUT_S)
    assert kafka_error(gone[a]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def describe_topic_configs(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=ADMIN_TIMEOUT_S)


# alter_configs (the AlterConfigs API) is deprecated in confluent-kafka, and tested
# on purpose: older clients and tools still send it.
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_confluent_describe_and_alter_configs(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1)

    defaults = describe_topic_configs(admin, topic)
    for name in ["retention.ms", "retention.bytes", "segment.bytes", "cleanup.policy",
                 "max.message.bytes", "compression.type"]:
        assert name in defaults, sorted(defaults)
        assert defaults[name].is_default, name
        assert defaults[name].source == ConfigSource.DEFAULT_CONFIG.value, name
    assert defaults["cleanup.policy"].value == "delete"
    assert defaults["compression.type"].value == "producer"
    default_retention_ms = defaults["retention.ms"].value
    assert int(default_retention_ms) > 0 or default_retention_ms == "-1"

    def incremental(*entries):
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
        return admin.incremental_alter_configs([resource])[resource]

    def entry(name, value=None, op=AlterConfigOpType.SET):
        return ConfigEntry(name, value, incremental_operation=op)

    # IncrementalAlterConfigs SET: the new values read back as the topic's own.
    assert incremental(entry("retention.ms", "123456"), entry("segment.ms", "7200000")).result(
        timeout=ADMIN_TIMEOUT_S
    ) is None
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not configs["retention.ms"].is_default
    assert configs["segment.ms"].value == "7200000"

    # Bad values are refused with INVALID_CONFIG and leave the topic as it was.
    for bad in [
        entry("retention.ms", "not-a-number"),
        entry("cleanup.policy", "sometimes"),
        entry("compression.type", "no-such-codec"),
        entry("no.such.config", "1"),
    ]:
        err = kafka_error(incremental(bad))
        assert err.code() == KafkaError.INVALID_CONFIG, (bad.name, bad.value, err)
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "123456"

    # DELETE returns a config to its default.
    assert incremental(entry("segment.ms", op=AlterConfigOpType.DELETE)).result(
        timeout=ADMIN_TIMEOUT_S
    ) is None
    configs = describe_topic_configs(admin, topic)
    assert configs["segment.ms"].is_default
    assert configs["segment.ms"].value == defaults["segment.ms"].value
    assert configs["retention.ms"].value == "123456"

    # The older AlterConfigs replaces the whole set: what it does not name returns
    # to its default.
    assert incremental(entry("segment.ms", "7200000")).result(timeout=ADMIN_TIMEOUT_S) is None
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "654321"})
    assert admin.alter_configs([resource])[resource].result(timeout=ADMIN_TIMEOUT_S) is None
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"].value == "654321"
    assert not configs["retention.ms"].is_default
    assert configs["segment.ms"].is_default
    assert configs["segment.ms"].value == defaults["segment.ms"].value

    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "soon"})
    err = kafka_error(admin.alter_configs([bad])[bad])
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "654321"

    # A topic that does not exist has no configs.
    missing = ConfigResource(ResourceType.TOPIC, topic_name("missing"))
    err = kafka_error(admin.describe_configs([missing])[missing])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


# ------------------------------------------------------------------- kafka-python


def kafka_python_admin(bootstrap):
    return kafka.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)


def kafka_python_produce(bootstrap, topic, sent_payloads, extra_config=None):
    config = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 16384,
    }
    config.update(extra_config or {})
    producer = kafka.KafkaProducer(**config)
    try:
        futures = [
            producer.send(
                topic,
                key=p.key,
                value=p.value,
                headers=list(p.headers),
                timestamp_ms=p.timestamp_ms,
            )
            for p in sent_payloads
        ]
        producer.flush(timeout=CONSUME_TIMEOUT_S)
        sent = []
        for i, (p, f) in enumerate(zip(sent_payloads, futures)):
            meta = f.get(timeout=CONSUME_TIMEOUT_S)
            assert meta.topic == topic
            assert meta.timestamp == p.timestamp_ms, f"record {i}"
            sent.append(
                Record(p.key, p.value, p.headers, p.timestamp_ms, meta.partition, meta.offset)
            )
        return sent
    finally:
        producer.close(timeout=CONSUME_TIMEOUT_S)


def kafka_python_consume(bootstrap, topic, partitions, count):
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
    )
    try:
        tps = [kafka.TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} consumed"
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    assert (m.topic, m.partition) == (tp.topic, tp.partition)
                    assert m.timestamp_type == 0  # CreateTime
                    got.append(
                        Record(
                            m.key,
                            m.value,
                            tuple(m.headers),
                            m.timestamp,
                            m.partition,
                            m.offset,
                        )
                    )
        beginnings = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        return got, {tp.partition: (beginnings[tp], ends[tp]) for tp in tps}
    finally:
        consumer.close()


def kafka_python_create_topic(admin, name, partitions=PARTITIONS, configs=None):
    result = admin.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1,
                "configs": configs or {}}},
        timeout_ms=30000,
    )
    [created] = result["topics"]
    assert (created["name"], created["error_code"]) == (name, 0), created


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_kafka_python_round_trip(bootstrap, topic_name, codec):
    topic = topic_name()
    admin = kafka_python_admin(bootstrap)
    try:
        kafka_python_create_topic(admin, topic)
    finally:
        admin.close()
    sent = kafka_python_produce(
        bootstrap,
        topic,
        # kafka-python cannot send a header whose value is null.
        payloads(ROUND_TRIP_RECORDS, "kafka-python", null_header_values=False),
        {"compression_type": codec},
    )
    got, ends = kafka_python_consume(bootstrap, topic, PARTITIONS, len(sent))
    per_partition = check_consumed(sent, got, PARTITIONS)
    check_watermarks(ends, per_partition)


def test_records_cross_between_clients(bootstrap, topic_name):
    """What one client writes, the other reads the same."""
    topic = topic_name("from-confluent")
    create_topic(admin_client(bootstrap), topic)
    sent = confluent_produce(
        bootstrap, topic, payloads(500, "cross", null_header_values=False)
    )
    got, _ = kafka_python_consume(bootstrap, topic, PARTITIONS, len(sent))
    check_consumed(sent, got, PARTITIONS)

    topic = topic_name("from-kafka-python")
    create_topic(admin_client(bootstrap), topic)
    sent = kafka_python_produce(
        bootstrap, topic, payloads(500, "cross", null_header_values=False)
    )
    got, _ = confluent_consume(bootstrap, topic, PARTITIONS, len(sent))
    check_consumed(sent, got, PARTITIONS)


def test_kafka_python_offsets_for_times(bootstrap, topic_name):
    topic = topic_name()
    create_topic(admin_client(bootstrap), topic, partitions=1)
    sent = kafka_python_produce(
        bootstrap, topic, payloads(50, "times", null_header_values=False)
    )
    assert [r.offset for r in sent] == list(range(50))
    consumer = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tp = kafka.TopicPartition(topic, 0)
        found = consumer.offsets_for_times({tp: sent[31].timestamp_ms - 1})[tp]
        assert (found.offset, found.timestamp) == (31, sent[31].timestamp_ms)
        # No record that new: kafka-python says None.
        assert consumer.offsets_for_times({tp: sent[-1].timestamp_ms + 1})[tp] is None
    finally:
        consumer.close()


def test_kafka_python_describe_and_alter_configs(bootstrap, topic_name):
    topic = topic_name()
    admin = kafka_python_admin(bootstrap)

    def describe(config_filter="all"):
        resource = KpConfigResource(ConfigResourceType.TOPIC, topic)
        return admin.describe_configs([resource], config_filter=config_filter)["topic"][topic]

    def alter(configs, incremental=None):
        resource = KpConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)
        return admin.alter_configs([resource], incremental=incremental)["topic"][topic]

    try:
        kafka_python_create_topic(admin, topic, partitions=1)
        defaults = describe()
        assert defaults["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
        assert defaults["cleanup.policy"]["value"] == "delete"
        # Nothing is set on a new topic.
        assert describe("modified") == {}

        # IncrementalAlterConfigs (kafka-python's choice when the broker has it).
        assert alter({"retention.ms": "98765"}) == "OK"
        changed = describe("modified")
        assert list(changed) == ["retention.ms"], changed
        assert changed["retention.ms"]["value"] == "98765"
        assert changed["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

        invalid = f"[Error {kafka.errors.InvalidConfigurationError.errno}]"
        result = alter({"retention.ms": "xyz"})
        assert result.startswith(invalid), result
        result = alter({"retention.ms": "xyz"}, incremental=False)
        assert result.startswith(invalid), result
        assert describe()["retention.ms"]["value"] == "98765"

        # AlterConfigs.
        assert alter({"retention.ms": "55555"}, incremental=False) == "OK"
        assert describe()["retention.ms"]["value"] == "55555"
    finally:
        admin.close()


def test_kafka_python_admin_create_describe_delete_topics(bootstrap, topic_name):
    admin = kafka_python_admin(bootstrap)
    try:
        a, b = topic_name("a"), topic_name("b")
        kafka_python_create_topic(admin, a, partitions=2)
        kafka_python_create_topic(admin, b, partitions=1, configs={"retention.ms": "60000"})
        assert {a, b} <= set(admin.list_topics())

        described = {t["name"]: t for t in admin.describe_topics([a, b])}
        assert sorted(described) == sorted([a, b])
        for name, partitions in [(a, 2), (b, 1)]:
            topic = described[name]
            assert topic["error_code"] == 0, topic
            parts = sorted(topic["partitions"], key=lambda p: p["partition_index"])
            assert [p["partition_index"] for p in parts] == list(range(partitions))
            for p in parts:
                assert p["error_code"] == 0, p
                assert p["leader_id"] >= 0, p
                assert p["replica_nodes"] == [p["leader_id"]], p
                assert p["isr_nodes"] == [p["leader_id"]], p

        with pytest.raises(kafka.errors.TopicAlreadyExistsError):
            kafka_python_create_topic(admin, a)

        result = admin.delete_topics([a, b], timeout_ms=30000)
        assert sorted((t["name"], t["error_code"]) for t in result["topics"]) == sorted(
            [(a, 0), (b, 0)]
        )
        remaining = set(admin.list_topics())
        assert a not in remaining and b not in remaining
        with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
            admin.delete_topics([a], timeout_ms=30000)
    finally:
        admin.close()
