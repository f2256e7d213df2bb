"""Records the tests produce, and the check that what a consumer read back is exactly
what the producer was told it wrote.

Each client's test turns what it sent (with the partition and offset from its delivery
report) and what it consumed into `Record`s, so one comparison serves every client.
"""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Record:
    key: Optional[bytes]
    value: Optional[bytes]
    # In wire order; a key may repeat and a value may be null.
    headers: tuple
    timestamp_ms: int
    partition: int
    offset: int


@dataclass(frozen=True)
class Payload:
    """What a test asks a producer to send; the broker decides where it lands."""

    key: bytes
    value: Optional[bytes]
    headers: tuple
    timestamp_ms: int


# An old, fixed CreateTime far from "now", so a broker that stamped its own time or
# dropped the producer's would be caught.
TS0_MS = 1_600_000_000_000


def payloads(count, label, null_header_values=True):
    """`count` keyed records: binary and text values of varied sizes (a few of them
    large, a few null tombstones), a repeated header key, and distinct CreateTimes.

    `null_header_values` adds a header whose value is null, which kafka-python
    cannot send.
    """
    out = []
    binary = bytes(range(256))
    for i in range(count):
        if i % 997 == 5:
            value = None  # a tombstone
        elif i % 499 == 3:
            value = binary * 64 + str(i).encode()  # ~16 KiB
        elif i % 7 == 0:
            value = b""
        else:
            value = f"value-{i}-".encode() + binary[: i % 256]
        headers = [("i", str(i).encode()), ("client", label.encode())]
        if i % 3 == 0:
            headers.append(("i", b"again"))  # a repeated key keeps its place
        if i % 5 == 0:
            headers.append(("empty", b""))
        if null_header_values and i % 11 == 0:
            headers.append(("null", None))
        out.append(
            Payload(
                key=f"key-{i}".encode(),
                value=value,
                headers=tuple(headers),
                timestamp_ms=TS0_MS + i * 3,
            )
        )
    return out


def check_consumed(sent, got, partitions):
    """`sent`: Records with the partition and offset their delivery reports gave;
    `got`: Records in the order one consumer returned them. Every sent record is read
    back once, unchanged, at its reported place; each partition's offsets run
    0, 1, 2, ... with no gap; and the records spread over all `partitions`.
    """
    by_place = {}
    for r in got:
        place = (r.partition, r.offset)
        assert place not in by_place, f"offset {place} consumed twice"
        by_place[place] = r
    assert len(got) == len(sent), f"consumed {len(got)} records, produced {len(sent)}"

    for i, s in enumerate(sent):
        place = (s.partition, s.offset)
        assert place in by_place, f"record {i} ({s.key!r}) missing at {place}"
        assert by_place[place] == s, f"record {i} differs at {place}"

    per_partition = {}
    for r in got:
        per_partition.setdefault(r.partition, []).append(r.offset)
    assert sorted(per_partition) == list(range(partitions)), (
        f"records landed in partitions {sorted(per_partition)}"
    )
    for p, offsets in per_partition.items():
        # Read in offset order, from 0, without gaps.
        assert offsets == list(range(len(offsets))), f"partition {p} offsets {offsets[:20]}..."
    return per_partition
