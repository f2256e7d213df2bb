"""Consumer groups with the Python clients: confluent-kafka (librdkafka) and
kafka-python (its own group coordinator code, strict about protocol details) in
the same group, a member that dies without leaving, and the admin APIs for groups.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
import kafka
from kafka.admin import KafkaAdminClient

PARTITIONS = 4


def make_topic(bootstrap, name, partitions=PARTITIONS):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(timeout=30)


def produce(bootstrap, topic, n, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0


class Member(threading.Thread):
    """Polls in its own thread; counts a record only once its synchronous commit
    succeeded, as an application that commits after processing would."""

    def __init__(self, kind, bootstrap, group, topic, seen, lock):
        super().__init__(daemon=True)
        self.kind, self.seen, self.lock = kind, seen, lock
        self.stop = threading.Event()
        self.assigned = set()
        if kind == "confluent":
            self.c = Consumer({
                "bootstrap.servers": bootstrap, "group.id": group,
                "client.id": "confluent-member", "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range",
            })
            self.c.subscribe([topic])
        else:
            self.c = kafka.KafkaConsumer(
                topic, bootstrap_servers=bootstrap, group_id=group,
                client_id="kafka-python-member", auto_offset_reset="earliest",
                enable_auto_commit=False, session_timeout_ms=6000,
                heartbeat_interval_ms=500,
                partition_assignment_strategy=[kafka.coordinator.assignors.range.RangePartitionAssignor],
            )

    def run(self):
        while not self.stop.is_set():
            if self.kind == "confluent":
                m = self.c.poll(0.1)
                if m is not None and m.error() is None:
                    try:
                        self.c.commit(m, asynchronous=False)
                        with self.lock:
                            self.seen.setdefault((m.partition(), m.offset()), []).append(self.kind)
                    except Exception:
                        pass
                self.assigned = {tp.partition for tp in self.c.assignment()}
            else:
                got = self.c.poll(timeout_ms=100)
                for tp, msgs in got.items():
                    for m in msgs:
                        try:
                            self.c.commit({tp: kafka.OffsetAndMetadata(m.offset + 1, "", -1)})
                            with self.lock:
                                self.seen.setdefault((tp.partition, m.offset), []).append(self.kind)
                        except kafka.errors.KafkaError:
                            break
                self.assigned = {tp.partition for tp in self.c.assignment()}
        self.c.close()


def wait_for(cond, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_confluent_and_kafka_python_members_share_a_group(bootstrap, topic_name):
    topic = topic_name()
    group = f"mixed-{uuid.uuid4().hex[:8]}"
    make_topic(bootstrap, topic)
    produce(bootstrap, topic, 400)
    seen, lock = {}, threading.Lock()
    members = [Member(k, bootstrap, group, topic, seen, lock) for k in ("confluent", "kafka-python")]
    for m in members:
        m.start()
    try:
        wait_for(lambda: all(m.assigned for m in members)
                 and sorted(members[0].assigned | members[1].assigned) == list(range(PARTITIONS))
                 and not (members[0].assigned & members[1].assigned),
                 "both clients to share the partitions")
        produce(bootstrap, topic, 400, start=400)
        wait_for(lambda: len(seen) == 800, "all 800 records")
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.join(30)
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"consumed more than once: {twice}"
    kinds = {v[0] for v in seen.values()}
    assert kinds == {"confluent", "kafka-python"}, kinds
    # The group's committed offsets are the log ends, read by both clients.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    c.close()
    lo_hi = Consumer({"bootstrap.servers": bootstrap, "group.id": "x"})
    ends = [lo_hi.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)]
    lo_hi.close()
    assert [tp.offset for tp in committed] == ends
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offs = admin.list_group_offsets(group)[group]
        assert {tp.partition: om.offset for tp, om in offs.items()} == dict(enumerate(ends))
    finally:
        admin.close()


MEMBER_SCRIPT = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
              "auto.offset.reset": "earliest", "client.id": "doomed"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_a_member_that_stops_heartbeating_is_removed_after_its_session(bootstrap, topic_name):
    topic = topic_name()
    group = f"dies-{uuid.uuid4().hex[:8]}"
    make_topic(bootstrap, topic)
    doomed = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, bootstrap, group, topic],
                              stdout=subprocess.PIPE, text=True)
    seen, lock = {}, threading.Lock()
    survivor = Member("confluent", bootstrap, group, topic, seen, lock)
    survivor.start()
    try:
        wait_for(lambda: survivor.assigned and len(survivor.assigned) < PARTITIONS,
                 "the two members to split the partitions")
        # SIGKILL: no LeaveGroup, no more heartbeats.
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        killed_at = time.time()
        wait_for(lambda: survivor.assigned == set(range(PARTITIONS)),
                 "the survivor to take every partition", timeout=60)
        # Not before the dead member's 6 s session ran out.
        assert time.time() - killed_at >= 4.0
    finally:
        survivor.stop.set()
        survivor.join(30)
        if doomed.poll() is None:
            doomed.kill()


def test_admin_clients_list_and_describe_groups(bootstrap, topic_name):
    topic = topic_name()
    group = f"admin-{uuid.uuid4().hex[:8]}"
    make_topic(bootstrap, topic)
    produce(bootstrap, topic, 10)
    seen, lock = {}, threading.Lock()
    m = Member("confluent", bootstrap, group, topic, seen, lock)
    m.start()
    try:
        wait_for(lambda: m.assigned == set(range(PARTITIONS)), "the member's assignment")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            listed = {g["group_id"]: g for g in admin.list_groups()}
            assert listed[group]["group_state"] == "Stable", listed
            assert listed[group]["protocol_type"] == "consumer", listed
            described = admin.describe_groups([group])[group]
            assert described["error"] is None, described
            assert described["group_state"] == "Stable", described
            assert described["protocol_data"] == "range", described
            assert [m["client_id"] for m in described["members"]] == ["confluent-member"], described
            assert [m["client_host"] for m in described["members"]] == ["/127.0.0.1"], described
        finally:
            admin.close()
        ca = AdminClient({"bootstrap.servers": bootstrap})
        groups = ca.list_consumer_groups().result(timeout=30)
        assert group in {g.group_id for g in groups.valid}
        d = ca.describe_consumer_groups([group])[group].result(timeout=30)
        assert len(d.members) == 1 and str(d.state).endswith("STABLE"), d
        parts = d.members[0].assignment.topic_partitions
        assert sorted(tp.partition for tp in parts) == list(range(PARTITIONS)), d
    finally:
        m.stop.set()
        m.join(30)
    # Empty now: it can be deleted, and then it is gone.
    ca = AdminClient({"bootstrap.servers": bootstrap})
    ca.delete_consumer_groups([group])[group].result(timeout=30)
    groups = ca.list_consumer_groups().result(timeout=30)
    assert group not in {g.group_id for g in groups.valid}
