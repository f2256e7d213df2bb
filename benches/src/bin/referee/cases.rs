//! The cases of `sluice-referee`, one method each, and the disk references they
//! measure on first use.

use std::time::Duration;

use super::{
    consume_timeout, records_in_gb, Case, Node, Referee, Row, Target, HOT_CACHE_MIB, HOT_PASSES,
    LATENCY_RATE, RECORD_BYTES,
};
use sluice_benches::broker::{histogram_quantiles_ms, metric_sum};
use sluice_benches::rdkafka_performance::{latency_file, Produce, Summary};
use sluice_benches::{FioSpace, Latency, SyncLatency};

/// The broker's bytes read from segment files, over all shards.
const FILE_READ_BYTES: &str = "sluice_shard_file_read_bytes_total";

/// Flat-out producers of a case in `(label, acks)`.
const ACKS: [(&str, &str); 3] = [
    ("acks=0 (the client's ceiling)", "0"),
    ("acks=1", "1"),
    ("acks=all", "all"),
];

/// Median of a few figures (the upper one of an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

impl Referee {
    fn fio_write(&mut self) -> Result<f64, String> {
        if let Some(x) = self.disk.write {
            return Ok(x);
        }
        let x = sluice_benches::fio(&self.args.dir, false, self.args.seconds, FioSpace::Fresh)?;
        self.rows
            .push(Row::new(Case::Disk, "fio 1 MiB O_DIRECT sequential write").mb(x));
        self.disk.write = Some(x);
        Ok(x)
    }

    fn fio_write_sync(&mut self) -> Result<f64, String> {
        if let Some(x) = self.disk.write_sync {
            return Ok(x);
        }
        let x = sluice_benches::fio(&self.args.dir, true, self.args.seconds, FioSpace::Fresh)?;
        self.rows
            .push(Row::new(Case::Disk, "fio 1 MiB O_DIRECT write, --fdatasync=1").mb(x));
        self.disk.write_sync = Some(x);
        Ok(x)
    }

    fn fio_read(&mut self) -> Result<f64, String> {
        if let Some(x) = self.disk.read {
            return Ok(x);
        }
        let x = sluice_benches::fio_read(&self.args.dir, self.args.seconds, 16)?;
        self.rows.push(
            Row::new(
                Case::Disk,
                "fio 1 MiB O_DIRECT sequential read, 16 in flight",
            )
            .mb(x),
        );
        self.disk.read = Some(x);
        Ok(x)
    }

    fn fio_sync_4k(&mut self) -> Result<SyncLatency, String> {
        if let Some(x) = self.disk.sync_4k {
            return Ok(x);
        }
        let x = sluice_benches::fio_sync_latency(&self.args.dir, self.args.seconds, 4096, None)?;
        let max = |l: &Latency| format!("max {:.2} ms, {} samples", l.max, l.samples);
        self.rows.push(
            Row::new(
                Case::Disk,
                "fio 4 KiB O_DIRECT write (clat), fdatasync after each",
            )
            .latency(&x.write)
            .note(max(&x.write)),
        );
        self.rows.push(
            Row::new(Case::Disk, "fio 4 KiB fdatasync (lat) after each write")
                .latency(&x.fdatasync)
                .note(max(&x.fdatasync)),
        );
        self.disk.sync_4k = Some(x);
        Ok(x)
    }

    pub(super) fn disk_case(&mut self) -> Result<(), String> {
        self.fio_write()?;
        self.fio_write_sync()?;
        self.fio_read()?;
        self.fio_sync_4k()?;
        Ok(())
    }

    pub(super) fn produce_case(&mut self) -> Result<(), String> {
        let write = self.fio_write()?;
        let write_sync = self.fio_write_sync()?;
        let reference = |acks: &str| match acks {
            "all" => (
                format!("fio write --fdatasync=1 {write_sync:.0} MB/s"),
                write_sync,
            ),
            _ => (format!("fio write {write:.0} MB/s"), write),
        };
        let node = self.start(true, &[])?;
        for (label, acks) in ACKS {
            let topic = format!("produce-rd-{acks}");
            let s = self.perf_produce(&node, &self.flat_out(&topic, acks))?;
            if acks == "all" {
                self.acks_all_max = Some(s.records_per_s);
            }
            let (name, r) = reference(acks);
            self.rows.push(
                Row::new(
                    Case::Produce,
                    format!("rdkafka_performance produce {label}"),
                )
                .mb(s.mb_per_s)
                .vs(&name, s.mb_per_s, r)
                .note(produced_note(&s)),
            );
        }
        for (label, acks) in ACKS {
            let mb = self.raw_produce(&node, &format!("produce-raw-{acks}"), acks)?;
            let (name, r) = reference(acks);
            self.rows.push(
                Row::new(Case::Produce, format!("sluice-bench raw produce {label}"))
                    .mb(mb)
                    .vs(&name, mb, r),
            );
        }
        Ok(())
    }

    /// MB of records that fit the default batch cache of every shard with room to
    /// spare (one shard per CPU, partitions spread evenly, records not).
    fn hot_mb(&self) -> f64 {
        self.args.hot_mb.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            0.6 * HOT_CACHE_MIB * 1.048_576 * cpus as f64
        })
    }

    /// Reads of data in the batch cache: a broker with a 1 GiB cache per shard, so
    /// that the reads are long enough to measure (the default cache holds a second
    /// of writes).
    pub(super) fn consume_hot_case(&mut self) -> Result<(), String> {
        let hot_mb = self.hot_mb();
        let node = self.start(
            true,
            &[format!("storage.cache_mib_per_shard={HOT_CACHE_MIB}")],
        )?;
        let produce = Produce {
            records: Some(records_in_gb(hot_mb / 1000.0)),
            seconds: 600.0,
            ..self.flat_out("hot", "1")
        };
        let produced = self.perf_produce(&node, &produce)?;
        let tool = self.tool(&node);
        let read_before = metric_sum(&node.admin, FILE_READ_BYTES)?;
        let mut mbs = Vec::new();
        for _ in 0..HOT_PASSES {
            let s = tool.consume(
                "hot",
                self.args.partitions,
                produced.records,
                consume_timeout(produced.records),
            )?;
            mbs.push(s.mb_per_s);
        }
        let disk_mb = ((metric_sum(&node.admin, FILE_READ_BYTES)? - read_before) / 1e6).max(0.0);
        self.rows.push(
            Row::new(
                Case::ConsumeHot,
                format!("rdkafka_performance consume, {hot_mb:.0} MB hot"),
            )
            .mb(median(mbs))
            .note(format!(
                "median of {HOT_PASSES}; the broker read {disk_mb:.1} MB from files"
            )),
        );
        let read_before = metric_sum(&node.admin, FILE_READ_BYTES)?;
        let mut mbs = Vec::new();
        for _ in 0..HOT_PASSES {
            mbs.push(self.raw_consume(&node, "hot")?);
        }
        let disk_mb = ((metric_sum(&node.admin, FILE_READ_BYTES)? - read_before) / 1e6).max(0.0);
        self.rows.push(
            Row::new(
                Case::ConsumeHot,
                format!("sluice-bench raw consume, {hot_mb:.0} MB hot"),
            )
            .mb(median(mbs))
            .note(format!(
                "batch bytes; median of {HOT_PASSES}; the broker read {disk_mb:.1} MB from files"
            )),
        );
        Ok(())
    }

    /// Makes the cold topic `history` hold at least `gb` GB of acks=1 records (in an
    /// emptied history directory when it has none yet).
    fn ensure_history(&mut self, gb: f64) -> Result<(), String> {
        let want = records_in_gb(gb);
        if self.history_records >= want {
            return Ok(());
        }
        let more = want - self.history_records;
        let bytes = more * (RECORD_BYTES as u64 + 100);
        let free = sluice_benches::free_bytes(&self.args.dir)?;
        if bytes + (2 << 30) > free {
            return Err(format!(
                "{:.1} GB more of history need {:.1} GB free in {} (and 2 GiB to spare); {:.1} GB are free",
                gb,
                bytes as f64 / 1e9,
                self.args.dir.display(),
                free as f64 / 1e9
            ));
        }
        let fresh = self.history_records == 0;
        if fresh {
            let _ = std::fs::remove_dir_all(self.history_dir());
        }
        let node = self.start(false, &[])?;
        if fresh {
            self.create_topic(&node, "history")?;
        }
        eprintln!(
            "sluice-referee: writing {:.1} GB of history ...",
            more as f64 * RECORD_BYTES as f64 / 1e9
        );
        let p = Produce {
            records: Some(more),
            // At 10 MB/s, and at least 10 minutes.
            seconds: (bytes as f64 / 10e6).max(600.0),
            ..self.flat_out("history", "1")
        };
        self.tool(&node).produce(&p, || false)?;
        self.history_records = want;
        Ok(())
    }

    /// The broker restarted on the existing data (its batch cache empty) after the
    /// page cache was dropped, and a note to add to the row if it could not be.
    fn start_cold(&self) -> Result<(Node, String), String> {
        let caveat = sluice_benches::drop_page_cache()
            .err()
            .map_or_else(String::new, |e| format!("; {e}"));
        Ok((self.start(false, &[])?, caveat))
    }

    pub(super) fn consume_cold_case(&mut self) -> Result<(), String> {
        let read = self.fio_read()?;
        self.ensure_history(self.args.cold_gb)?;
        let records = self.history_records;
        let gb = records as f64 * RECORD_BYTES as f64 / 1e9;
        let reference = format!("fio read, 16 in flight {read:.0} MB/s");
        let (node, caveat) = self.start_cold()?;
        let s = self.tool(&node).consume(
            "history",
            self.args.partitions,
            records,
            consume_timeout(records),
        )?;
        drop(node);
        self.rows.push(
            Row::new(
                Case::ConsumeCold,
                format!("rdkafka_performance consume, {gb:.1} GB cold"),
            )
            .mb(s.mb_per_s)
            .vs(&reference, s.mb_per_s, read)
            .target(Target::AtLeast(0.8))
            .note(format!("{} records{caveat}", s.records)),
        );
        let (node, caveat) = self.start_cold()?;
        let mb = self.raw_consume(&node, "history")?;
        self.rows.push(
            Row::new(
                Case::ConsumeCold,
                format!("sluice-bench raw consume, {gb:.1} GB cold"),
            )
            .mb(mb)
            .vs(&reference, mb, read)
            .target(Target::AtLeast(0.9))
            .note(format!("batch bytes{caveat}")),
        );
        Ok(())
    }

    pub(super) fn cache_case(&mut self) -> Result<(), String> {
        let big = "storage.cache_mib_per_shard=1024".to_string();
        let mut figures = [[0.0; 2]; 2];
        for (i, sets) in [vec![], vec![big]].iter().enumerate() {
            let node = self.start(true, sets)?;
            figures[i][0] = self
                .perf_produce(&node, &self.flat_out("cache", "1"))?
                .mb_per_s;
            figures[i][1] = self.raw_produce(&node, "cache-raw", "1")?;
        }
        for (j, client) in ["rdkafka_performance", "sluice-bench raw"]
            .iter()
            .enumerate()
        {
            let (default, big) = (figures[0][j], figures[1][j]);
            self.rows.push(
                Row::new(
                    Case::Cache,
                    format!("{client} produce acks=1, cache 1024 MiB/shard"),
                )
                .mb(big)
                .vs(
                    &format!("cache 64 MiB/shard {default:.0} MB/s"),
                    big,
                    default,
                )
                .target(Target::Within(0.1)),
            );
        }
        Ok(())
    }

    /// Runs an acks=all producer at `rate` with `linger.ms=1` for `--seconds`, each
    /// record's latency kept, until `stop` says so.
    fn timed_produce(
        &self,
        node: &Node,
        topic: &str,
        rate: f64,
        stop: impl FnMut() -> bool,
    ) -> Result<(Summary, Latency), String> {
        self.create_topic(node, topic)?;
        let file = self.args.dir.join(format!("latency-{topic}.txt"));
        let p = Produce {
            linger_ms: 1,
            rate: Some(rate),
            latency_file: Some(&file),
            ..self.flat_out(topic, "all")
        };
        let s = self.tool(node).produce(&p, stop);
        let l = s
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|_| latency_file(&file));
        let _ = std::fs::remove_file(&file);
        Ok((s?, l?))
    }

    pub(super) fn latency_case(&mut self) -> Result<(), String> {
        let disk = self.fio_sync_4k()?;
        let node = self.start(true, &[])?;
        let (s, l) = self.timed_produce(&node, "latency", LATENCY_RATE, || false)?;
        let disk_p99 = disk.write.p99 + disk.fdatasync.p99;
        self.rows.push(
            Row::new(
                Case::Latency,
                format!("rdkafka_performance acks=all at {LATENCY_RATE:.0} rec/s, linger.ms=1"),
            )
            .mb(s.mb_per_s)
            .latency(&l)
            .vs(
                &format!("disk 4 KiB write+fdatasync p99 {disk_p99:.2} ms"),
                l.p99,
                disk_p99,
            )
            .target(Target::LatencyMs {
                p99: 3.0,
                p999: 6.0,
            })
            .note(format!(
                "max {:.2} ms; {:.0} rec/s delivered; {} failed",
                l.max, s.records_per_s, s.failed
            )),
        );
        // Where the tail is: the broker's own view of the same run, from its
        // histograms (bucket upper bounds).
        for (what, name, filter) in [
            (
                "broker: Produce requests, read to answered",
                "sluice_request_duration_seconds",
                "api=\"Produce\"",
            ),
            (
                "broker: fdatasync of log files",
                "sluice_shard_flush_duration_seconds",
                "",
            ),
        ] {
            if let Some(q) = histogram_quantiles_ms(&node.admin, name, filter, &[0.5, 0.99, 0.999])?
            {
                let mut row = Row::new(Case::Latency, what);
                row.p50_ms = q.first().copied();
                row.p99_ms = q.get(1).copied();
                row.p999_ms = q.get(2).copied();
                self.rows
                    .push(row.note("at most: upper bounds of /metrics histogram buckets"));
            }
        }
        let sum = |f: fn(&Latency) -> f64| f(&disk.write) + f(&disk.fdatasync);
        let mut disk_row = Row::new(Case::Latency, "disk: fio 4 KiB write + fdatasync");
        disk_row.p50_ms = Some(sum(|l| l.p50));
        disk_row.p99_ms = Some(sum(|l| l.p99));
        disk_row.p999_ms = Some(sum(|l| l.p999));
        self.rows
            .push(disk_row.note("write clat + fdatasync lat, percentile by percentile"));
        Ok(())
    }

    /// rdkafka_performance's acks=all records per second flat out (from the
    /// produce case, or measured now on `node`).
    fn acks_all_max(&mut self, node: &Node) -> Result<f64, String> {
        if let Some(x) = self.acks_all_max {
            return Ok(x);
        }
        let x = self
            .perf_produce(node, &self.flat_out("rvw-max", "all"))?
            .records_per_s;
        self.acks_all_max = Some(x);
        Ok(x)
    }

    pub(super) fn reads_vs_writes_case(&mut self) -> Result<(), String> {
        self.ensure_history(self.args.history_gb)?;
        let records = records_in_gb(self.args.history_gb);
        let rate = {
            let node = self.start(false, &[])?;
            self.acks_all_max(&node)? / 2.0
        };
        let (node, caveat) = self.start_cold()?;
        let (alone_s, alone) = self.timed_produce(&node, "rvw-alone", rate, || false)?;
        let mut consumer =
            self.tool(&node)
                .start_consume("history", self.args.partitions, records)?;
        let mut consumer_first = false;
        let (loaded_s, loaded) = self.timed_produce(&node, "rvw-loaded", rate, || {
            consumer_first = consumer.exited();
            consumer_first
        })?;
        let c = consumer.consumed(consume_timeout(records))?;
        let what = format!("producer acks=all at {rate:.0} rec/s (half the max)");
        self.rows.push(
            Row::new(Case::ReadsVsWrites, format!("{what}, alone"))
                .mb(alone_s.mb_per_s)
                .latency(&alone)
                .note(format!("{:.0} rec/s delivered", alone_s.records_per_s)),
        );
        let ran = Duration::from_millis(loaded_s.elapsed_ms).as_secs_f64();
        let reading = if consumer_first {
            "the consumer finished first and the producer stopped with it"
        } else {
            "the consumer reading throughout"
        };
        self.rows.push(
            Row::new(
                Case::ReadsVsWrites,
                format!("{what}, one consumer reading history"),
            )
            .mb(loaded_s.mb_per_s)
            .latency(&loaded)
            .vs(
                &format!("alone p99 {:.2} ms", alone.p99),
                loaded.p99,
                alone.p99,
            )
            .target(Target::AtMost(2.0))
            .note(format!(
                "{:.0} rec/s delivered over {ran:.1} s, {reading}{caveat}",
                loaded_s.records_per_s
            )),
        );
        self.rows.push(
            Row::new(
                Case::ReadsVsWrites,
                "the consumer of cold history meanwhile (rdkafka_performance)",
            )
            .mb(c.mb_per_s)
            .note(format!(
                "{} records in {:.1} s",
                c.records,
                c.elapsed_ms as f64 / 1000.0
            )),
        );
        Ok(())
    }
}

/// What a producer's summary says beside its MB/s.
fn produced_note(s: &Summary) -> String {
    if s.failed > 0 {
        format!("{:.0} rec/s; {} failed", s.records_per_s, s.failed)
    } else {
        format!("{:.0} rec/s", s.records_per_s)
    }
}
