"""confluent-kafka against a three-node Sluice cluster (run by ops/tests/it/python.rs
with every node's address in SLUICE_NODES, comma separated).

The AdminClient, connected to the first node only, creates 100 topics of 6
partitions; Metadata asked of each node shows the same three brokers and the same
leader for every partition, leaders within 1.5x of each other per node; a Producer
given one node writes a record to every partition (it must follow the leaders); a
Consumer in a group, given another node, reads them all back with keys, values and
offsets checked. Exits non-zero with a message on the first difference.
"""
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

nodes = os.environ["SLUICE_NODES"].split(",")
assert len(nodes) == 3, nodes
topics = [f"py{i}" for i in range(100)]

admin = AdminClient({"bootstrap.servers": nodes[0]})
started = time.time()
for name, future in admin.create_topics([NewTopic(t, 6, 1) for t in topics],
                                        operation_timeout=60).items():
    future.result()
print(f"100 topics x 6 partitions created through {nodes[0]} in {time.time() - started:.2f} s")

views = []
for node in nodes:
    # The creation was answered once the first node applied it; the others follow.
    deadline = time.time() + 30
    while True:
        md = AdminClient({"bootstrap.servers": node}).list_topics(timeout=30)
        brokers = sorted(md.brokers)
        leaders = {(t, p.id): p.leader for t in topics if t in md.topics
                   for p in md.topics[t].partitions.values()}
        if len(leaders) == 600 or time.time() > deadline:
            break
        time.sleep(0.2)
    if brokers != [1, 2, 3]:
        sys.exit(f"{node} lists brokers {brokers}")
    if len(leaders) != 600:
        sys.exit(f"{node} shows {len(leaders)} partitions of the 600")
    views.append(leaders)
for node, view in zip(nodes, views):
    if view != views[0]:
        diff = [k for k in view if view[k] != views[0].get(k)][:5]
        sys.exit(f"{node} disagrees with {nodes[0]} on leaders, e.g. {diff}")
per_node = {}
for leader in views[0].values():
    per_node[leader] = per_node.get(leader, 0) + 1
print("leaders per node:", per_node)
if sorted(per_node) != [1, 2, 3] or max(per_node.values()) * 2 > min(per_node.values()) * 3:
    sys.exit(f"leaders unbalanced: {per_node}")

producer = Producer({"bootstrap.servers": nodes[0], "acks": "all", "enable.idempotence": True})
delivered = {}


def on_delivery(err, msg):
    if err is not None:
        delivered[(msg.topic(), msg.partition())] = err
    else:
        delivered[(msg.topic(), msg.partition())] = msg.offset()


for t in topics:
    for p in range(6):
        producer.produce(t, key=f"{t}/{p}", value=f"value of {t}/{p}", partition=p,
                         on_delivery=on_delivery)
left = producer.flush(60)
if left or len(delivered) != 600 or any(o != 0 for o in delivered.values()):
    bad = {k: v for k, v in delivered.items() if v != 0}
    sys.exit(f"{left} records unsent; not at offset 0: {list(bad.items())[:5]}")

consumer = Consumer({"bootstrap.servers": nodes[2], "group.id": "py-cluster",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe(topics)
seen = set()
deadline = time.time() + 90
while len(seen) < 600 and time.time() < deadline:
    m = consumer.poll(0.5)
    if m is None:
        continue
    if m.error():
        raise KafkaException(m.error())
    key = m.key().decode()
    if key != f"{m.topic()}/{m.partition()}" or m.value().decode() != f"value of {key}" \
            or m.offset() != 0:
        sys.exit(f"wrong record at {m.topic()}-{m.partition()}@{m.offset()}: {key}")
    seen.add(key)
consumer.commit(asynchronous=False)
consumer.close()
if len(seen) != 600:
    sys.exit(f"read back {len(seen)} of 600 records")
print("600 records produced through one node and read back through another")
