//! Consumer groups: where a group's coordinator lives and how its state is stored.
//!
//! Offsets and group metadata live in the internal topic `__consumer_offsets`, in
//! Kafka's record format ([`records`]). A group belongs to partition
//! `abs(java_hash(group)) % partitions` of that topic, computed exactly as Kafka
//! does so that tools agree on it, and its coordinator runs on the shard that owns
//! that partition.

pub mod coordinator;
pub mod records;
pub mod state;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's default `offsets.topic.num.partitions`.
pub const OFFSETS_TOPIC_PARTITIONS: i32 = 50;

/// Java's `String.hashCode` of `s`: over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The partition of `__consumer_offsets` that holds `group`: Kafka's
/// `Utils.abs(group.hashCode()) % partitions`, where `abs(i32::MIN)` is 0.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_java() {
        // Values of java.lang.String#hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        // Wraps like Java's int arithmetic; this string hashes to Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Outside the BMP: two UTF-16 code units (0xD83D, 0xDE00).
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn partition_follows_kafkas_abs() {
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        // Kafka's Utils.abs(Integer.MIN_VALUE) is 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for g in ["", "g", "my-group", "消费者组", "\u{1F600}"] {
            assert!((0..50).contains(&partition_for(g, 50)), "{g}");
        }
        // A negative hash: "zzzzzzzz" overflows to a negative int in Java.
        let h = java_string_hash("zzzzzzzz");
        assert!(h < 0);
        assert_eq!(partition_for("zzzzzzzz", 50), (-h) % 50);
    }
}
