use super::*;

fn over(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn refused(pairs: &[(&str, &str)]) -> ConfigError {
    settings(&LogConfig::default(), &over(pairs)).unwrap_err()
}

#[test]
fn overrides_map_onto_the_log_settings() {
    let s = settings(
        &LogConfig::default(),
        &over(&[
            ("retention.ms", "-1"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "4096"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.insync.replicas", "2"),
            ("cleanup.policy", "compact, delete"),
            ("index.interval.bytes", "0"),
            ("flush.messages", "9223372036854775807"),
        ]),
    )
    .unwrap();
    assert_eq!(s.log.retention_ms, None);
    assert_eq!(s.log.retention_bytes, Some(1 << 20));
    assert_eq!(s.log.segment_bytes, 4096);
    assert_eq!(s.log.index_interval_bytes, 0);
    assert_eq!(s.log.flush_messages, None);
    assert_eq!(s.log.message_timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(s.min_insync_replicas, 2);
    assert!(s.compact);
    assert_eq!(s.compression, Target::Producer);
}

#[test]
fn retention_deletes_only_under_the_delete_policy() {
    let compact = settings(
        &LogConfig::default(),
        &over(&[("cleanup.policy", "compact"), ("retention.ms", "1000")]),
    )
    .unwrap();
    assert!(compact.compact);
    assert_eq!(compact.log.retention_ms, None);
    assert_eq!(compact.log.retention_bytes, None);
    let keep = settings(&LogConfig::default(), &over(&[("cleanup.policy", "")])).unwrap();
    assert!(!keep.compact);
    assert_eq!(keep.log.retention_ms, None);
    let default = settings(&LogConfig::default(), &BTreeMap::new()).unwrap();
    assert_eq!(default.log.retention_ms, LogConfig::default().retention_ms);
}

#[test]
fn compression_type_and_levels() {
    let s = |pairs: &[(&str, &str)]| settings(&LogConfig::default(), &over(pairs)).unwrap();
    assert_eq!(
        s(&[("compression.type", "gzip")]).compression,
        Target::Codec(Codec::Gzip, -1)
    );
    assert_eq!(
        s(&[
            ("compression.type", "zstd"),
            ("compression.zstd.level", "9")
        ])
        .compression,
        Target::Codec(Codec::Zstd, 9)
    );
    assert_eq!(
        s(&[("compression.type", "lz4")]).compression,
        Target::Codec(Codec::Lz4, 9)
    );
    assert_eq!(
        s(&[("compression.type", "uncompressed")]).compression,
        Target::Codec(Codec::None, 0)
    );
}

#[test]
fn timestamp_bounds_fall_back_to_the_difference() {
    let s = settings(
        &LogConfig::default(),
        &over(&[
            ("message.timestamp.difference.max.ms", "5000"),
            ("message.timestamp.after.max.ms", "100"),
        ]),
    )
    .unwrap();
    assert_eq!(s.timestamp_before_max_ms, 5000);
    assert_eq!(s.timestamp_after_max_ms, 100);
    let none = settings(&LogConfig::default(), &BTreeMap::new()).unwrap();
    assert_eq!(none.timestamp_before_max_ms, i64::MAX);
}

#[test]
fn every_kafka_topic_config_is_accepted_with_a_good_value() {
    // The values librdkafka's admin tests and Kafka's docs use, one per key.
    let good = [
        ("cleanup.policy", "compact,delete"),
        ("compression.type", "lz4"),
        ("compression.gzip.level", "9"),
        ("compression.lz4.level", "17"),
        ("compression.zstd.level", "-131072"),
        ("delete.retention.ms", "900"),
        ("file.delete.delay.ms", "0"),
        ("flush.messages", "1"),
        ("flush.ms", "0"),
        ("follower.replication.throttled.replicas", "0:1,1:2"),
        ("index.interval.bytes", "4096"),
        ("leader.replication.throttled.replicas", "*"),
        ("local.retention.bytes", "-2"),
        ("local.retention.ms", "-2"),
        ("max.compaction.lag.ms", "1000"),
        ("max.message.bytes", "0"),
        ("message.downconversion.enable", "FALSE"),
        ("message.format.version", "0.10.2"),
        ("message.timestamp.after.max.ms", "3600000"),
        ("message.timestamp.before.max.ms", "0"),
        ("message.timestamp.difference.max.ms", "1"),
        ("message.timestamp.type", "CreateTime"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("min.compaction.lag.ms", "0"),
        ("min.insync.replicas", "1"),
        ("preallocate", "true"),
        ("remote.log.copy.disable", "false"),
        ("remote.log.delete.on.disable", "false"),
        ("remote.storage.enable", "false"),
        ("retention.bytes", "-5"),
        ("retention.ms", "-1"),
        ("segment.bytes", "14"),
        ("segment.index.bytes", "4"),
        ("segment.jitter.ms", "10"),
        ("segment.ms", "1"),
        ("unclean.leader.election.enable", "true"),
    ];
    assert_eq!(good.len(), TOPIC_KEYS.len());
    for (k, v) in good {
        let s = settings(&LogConfig::default(), &over(&[(k, v)]));
        assert!(s.is_ok(), "{k}={v}: {s:?}");
        assert_eq!(
            value_of(&LogConfig::default(), &over(&[(k, v)]), k).as_deref(),
            Some(v)
        );
    }
    // All at once too (the cross checks hold).
    assert!(settings(&LogConfig::default(), &over(&good)).is_ok());
}

#[test]
fn bad_keys_and_values_are_refused_with_kafkas_messages() {
    for (k, v, message) in [
        ("retention.ms", "soon", "Invalid value soon for configuration retention.ms: Not a number of type LONG"),
        ("retention.ms", "-5", "Invalid value -5 for configuration retention.ms: Value must be at least -1"),
        ("segment.bytes", "10", "Value must be at least 14"),
        ("segment.bytes", "3000000000", "Not a number of type INT"),
        ("cleanup.policy", "forever", "Invalid value forever for configuration cleanup.policy: String must be one of: compact, delete"),
        ("cleanup.policy", "compact,", "String must be one of"),
        ("cleanup.policy", "Compact", "String must be one of"),
        ("compression.type", "none", "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
        ("compression.gzip.level", "10", "Value must be between 1 and 9 or equal to -1"),
        ("compression.gzip.level", "0", "Value must be between 1 and 9 or equal to -1"),
        ("compression.lz4.level", "18", "Value must be no more than 17"),
        ("min.insync.replicas", "0", "Value must be at least 1"),
        ("message.timestamp.type", "Now", "String must be one of: CreateTime, LogAppendTime"),
        ("min.cleanable.dirty.ratio", "1.5", "Value must be no more than 1"),
        ("min.cleanable.dirty.ratio", "NaN", "Not a number of type DOUBLE"),
        ("preallocate", "yes", "Expected value to be either true or false"),
        ("leader.replication.throttled.replicas", "*,0:1", "must be the literal '*'"),
        ("follower.replication.throttled.replicas", "a:1", "must be the literal '*'"),
        ("message.format.version", "9.9", "Version 9.9 is not a valid version"),
        ("remote.storage.enable", "true", "Tiered Storage functionality is disabled in the broker"),
        ("no.such.key", "1", "Unknown topic config name: no.such.key"),
    ] {
        let e = refused(&[(k, v)]);
        assert_eq!(e.key, k, "{k}={v}: {e}");
        assert!(e.message.contains(message), "{k}={v}: {e}");
    }
    let e = refused(&[
        ("min.compaction.lag.ms", "10"),
        ("max.compaction.lag.ms", "5"),
    ]);
    assert!(e.message.contains("conflict topic config setting"), "{e}");
}

#[test]
fn every_listed_key_has_a_value_and_defaults_come_from_the_broker() {
    let defaults = LogConfig {
        retention_ms: Some(1234),
        ..LogConfig::default()
    };
    let described = describe(&defaults, &BTreeMap::new());
    assert_eq!(described.len(), TOPIC_KEYS.len());
    let get = |k: &str| {
        described
            .iter()
            .find(|(key, _, _)| key.name == k)
            .map(|(_, v, o)| (v.clone(), *o))
    };
    assert_eq!(get("retention.ms"), Some(("1234".into(), false)));
    assert_eq!(get("cleanup.policy"), Some(("delete".into(), false)));
    assert_eq!(get("compression.type"), Some(("producer".into(), false)));
    assert_eq!(
        get("follower.replication.throttled.replicas"),
        Some((String::new(), false))
    );
    assert!(is_list("cleanup.policy") && !is_list("retention.ms"));
}

#[test]
fn kafka_versions() {
    for v in [
        "0.8.0", "0.10.2", "0.11.0", "1.1", "2.8", "2.8-IV1", "3.0-IV1", "3.9",
    ] {
        assert!(is_kafka_version(v), "{v}");
    }
    for v in ["", "4.0", "3.10", "0.7", "x.y", "3.0-IV", "2.8-IVx", "1.2"] {
        assert!(!is_kafka_version(v), "{v}");
    }
}

#[test]
fn stored_overrides_an_older_version_took_are_dropped_not_fatal() {
    // Before the Kafka-exact checks these took any positive 64-bit number.
    let stored = over(&[
        ("index.interval.bytes", "5000000000"),
        ("segment.index.bytes", "9999999999"),
        ("retention.ms", "1000"),
    ]);
    assert!(settings(&LogConfig::default(), &stored).is_err());
    let (s, kept, dropped) = settings_of_stored(&LogConfig::default(), &stored);
    assert_eq!(s.log.retention_ms, Some(1000));
    assert_eq!(
        s.log.index_interval_bytes,
        LogConfig::default().index_interval_bytes
    );
    assert_eq!(kept, over(&[("retention.ms", "1000")]));
    let mut keys: Vec<String> = dropped.into_iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, ["index.interval.bytes", "segment.index.bytes"]);
}
