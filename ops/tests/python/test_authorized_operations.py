"""Authorized operations (KIP-430) with confluent-kafka's AdminClient, as
librdkafka's own admin test (0081) checks them: nothing when not asked for; when
asked, every operation the resource supports, since Sluice has no authorizer yet
(Kafka answers the same without one). librdkafka's describe_topics and
describe_cluster read them from Metadata v8-10, describe_consumer_groups from
DescribeGroups v3+.
"""

from confluent_kafka import Consumer, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

TOPIC_OPS = {
    AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
    AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
    AclOperation.ALTER_CONFIGS,
}
CLUSTER_OPS = {
    AclOperation.ALTER, AclOperation.ALTER_CONFIGS, AclOperation.CLUSTER_ACTION,
    AclOperation.CREATE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
    AclOperation.IDEMPOTENT_WRITE,
}
GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}


def ops(found):
    return None if found is None else set(found)


def test_topics_cluster_and_groups_answer_authorized_operations(bootstrap, topic_name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = topic_name()
    for f in admin.create_topics([NewTopic(name, 2, 1)]).values():
        f.result(timeout=30)

    for include, want in [(False, None), (True, TOPIC_OPS)]:
        futures = admin.describe_topics(
            TopicCollection([name]), include_authorized_operations=include,
            request_timeout=10)
        described = futures[name].result(timeout=30)
        assert ops(described.authorized_operations) == want, (include, described)

    for include, want in [(False, None), (True, CLUSTER_OPS)]:
        cluster = admin.describe_cluster(
            include_authorized_operations=include, request_timeout=10).result(timeout=30)
        assert ops(cluster.authorized_operations) == want, (include, cluster)

    group = f"{name}-g"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([name])
    for _ in range(40):
        consumer.poll(0.25)
        if consumer.assignment():
            break
    try:
        for include, want in [(False, None), (True, GROUP_OPS)]:
            futures = admin.describe_consumer_groups(
                [group], include_authorized_operations=include, request_timeout=10)
            described = futures[group].result(timeout=30)
            assert ops(described.authorized_operations) == want, (include, described)
    finally:
        consumer.close()
