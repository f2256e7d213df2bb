"""Topic configs as librdkafka's own test suite uses them (confluent-kafka, which is
librdkafka): every config Kafka 3.x/4.x accept is accepted on CreateTopics,
AlterConfigs and IncrementalAlterConfigs; names Kafka does not know are refused;
a compacted topic refuses keyless records one by one (KIP-467), as librdkafka's
test 0011 expects.
"""

import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

ADMIN_TIMEOUT_S = 30

# One value for each topic config Kafka 3.9 knows (4.x drops two of them, and
# Sluice accepts both so a 3.x client's settings keep working).
EVERY_CONFIG = {
    "cleanup.policy": "compact,delete",
    "compression.type": "zstd",
    "compression.gzip.level": "5",
    "compression.lz4.level": "3",
    "compression.zstd.level": "7",
    "delete.retention.ms": "900",
    "file.delete.delay.ms": "1000",
    "flush.messages": "10000",
    "flush.ms": "1000",
    "follower.replication.throttled.replicas": "*",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "0:1",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": "86400000",
    "max.message.bytes": "2000000",
    "message.downconversion.enable": "false",
    "message.format.version": "2.8",
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": "86400000000",
    "message.timestamp.difference.max.ms": "86400000000",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "100",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "remote.storage.enable": "false",
    "retention.bytes": "1073741824",
    "retention.ms": "86400000",
    "segment.bytes": "16777216",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "100",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "false",
}


def described(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=ADMIN_TIMEOUT_S)


def test_librdkafka_admin_topics_with_kafka_topic_configs_are_created(bootstrap, topic_name):
    """librdkafka's 0081 creates six topics, some with compression.type=lz4 and
    delete.retention.ms=900; each must be created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [topic_name(f"t{i}") for i in range(6)]
    new = []
    for i, t in enumerate(topics):
        config = {}
        if i % 2 == 0:
            config["compression.type"] = "lz4"
        if i % 3 == 0:
            config["delete.retention.ms"] = "900"
        new.append(NewTopic(t, 1 + i % 3, 1, config=config))
    every_name = topic_name("all")
    new.append(NewTopic(every_name, 1, 1, config=EVERY_CONFIG))
    futures = admin.create_topics(new, operation_timeout=ADMIN_TIMEOUT_S)
    for t, f in futures.items():
        assert f.result(timeout=ADMIN_TIMEOUT_S) is None, t
    every = described(admin, every_name)
    for k, v in EVERY_CONFIG.items():
        assert every[k].value == v and not every[k].is_default, (k, every[k])
    assert len(every) >= len(EVERY_CONFIG)
    lz4 = described(admin, topics[0])
    assert lz4["compression.type"].value == "lz4"
    assert lz4["delete.retention.ms"].value == "900"


# alter_configs (the AlterConfigs API) is deprecated in confluent-kafka; older
# clients and tools still send it.
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_take_kafka_topic_configs_and_refuse_unknown_names(bootstrap, topic_name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = topic_name()
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(timeout=ADMIN_TIMEOUT_S)

    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={
        "compression.type": "lz4", "delete.retention.ms": "900",
        "message.format.version": "3.0-IV1", "max.compaction.lag.ms": "3600000",
    })
    assert admin.alter_configs([resource])[resource].result(timeout=ADMIN_TIMEOUT_S) is None
    after = described(admin, topic)
    assert after["message.format.version"].value == "3.0-IV1"
    assert after["max.compaction.lag.ms"].value == "3600000"

    def incremental(*entries):
        r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
        return admin.incremental_alter_configs([r])[r]

    ok = incremental(
        ConfigEntry("min.cleanable.dirty.ratio", "0.9",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("compression.zstd.level", "12",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("leader.replication.throttled.replicas", "1:1",
                    incremental_operation=AlterConfigOpType.APPEND),
    )
    assert ok.result(timeout=ADMIN_TIMEOUT_S) is None
    after = described(admin, topic)
    assert after["min.cleanable.dirty.ratio"].value == "0.9"
    assert after["leader.replication.throttled.replicas"].value == "1:1"

    for name, value, message in [
        ("no.such.config", "1", "Unknown topic config name: no.such.config"),
        ("compression.type", "none", "String must be one of"),
        ("min.cleanable.dirty.ratio", "2", "Value must be no more than 1"),
        ("remote.storage.enable", "true", "Tiered Storage functionality is disabled"),
    ]:
        f = incremental(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
        try:
            f.result(timeout=ADMIN_TIMEOUT_S)
            raise AssertionError(f"{name}={value} was accepted")
        except Exception as e:  # noqa: BLE001 - the KafkaException is what is checked
            err = e.args[0]
            assert err.code() == KafkaError.INVALID_CONFIG, (name, err)
            assert message in err.str(), (name, err.str())
    # Nothing of the refused alterations was applied.
    assert described(admin, topic)["min.cleanable.dirty.ratio"].value == "0.9"


def produce_every_tenth_keyless(bootstrap, topic, extra):
    """librdkafka's test 0011: 100 records, every tenth without a key; the delivery
    report of each as (index, error code or None)."""
    config = {"bootstrap.servers": bootstrap, "linger.ms": 100, "acks": "all"}
    config.update(extra)
    p = Producer(config)
    reports = {}

    def report(i):
        return lambda err, _msg: reports.__setitem__(i, None if err is None else err.code())

    for i in range(100):
        key = None if i % 10 == 0 else f"key-{i}".encode()
        p.produce(topic, key=key, value=f"value-{i}".encode(), partition=0, on_delivery=report(i))
    assert p.flush(60) == 0
    return reports


def test_compacted_topic_refuses_keyless_records_one_by_one(bootstrap, topic_name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = topic_name()
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(timeout=ADMIN_TIMEOUT_S)

    def policy(op):
        r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=op)])
        assert admin.incremental_alter_configs([r])[r].result(timeout=ADMIN_TIMEOUT_S) is None

    # As test 0011 does: APPEND compact to the default `delete`.
    policy(AlterConfigOpType.APPEND)
    assert described(admin, topic)["cleanup.policy"].value == "delete,compact"
    time.sleep(1)

    # One batch: the keyless records fail with INVALID_RECORD, the others as part
    # of a batch that had invalid records.
    reports = produce_every_tenth_keyless(bootstrap, topic, {})
    assert len(reports) == 100
    for i, code in reports.items():
        want = KafkaError.INVALID_RECORD if i % 10 == 0 else KafkaError._INVALID_DIFFERENT_RECORD
        assert code == want, (i, code)

    # One record per batch: only the keyless ones fail.
    reports = produce_every_tenth_keyless(bootstrap, topic, {"batch.size": 1})
    for i, code in reports.items():
        want = KafkaError.INVALID_RECORD if i % 10 == 0 else None
        assert code == want, (i, code)

    # SUBTRACT compact: keyless records are taken again.
    policy(AlterConfigOpType.SUBTRACT)
    assert described(admin, topic)["cleanup.policy"].value == "delete"
    reports = produce_every_tenth_keyless(bootstrap, topic, {})
    assert all(code is None for code in reports.values()), reports
