//! Shared pieces of the benchmark binaries: the reference measurements (`fio` on the
//! disk under test, `iperf3` over loopback) that figures are compared with.

pub mod broker;
pub mod rdkafka_performance;

use std::path::Path;
use std::process::Command;

/// Where fio writes.
#[derive(Clone, Copy)]
pub enum FioSpace {
    /// A file larger than fio can fill in the time: every write lands in new space.
    Fresh,
    /// fio's usual 2 GiB file, rewritten from the start whenever fio reaches its end.
    Overwrite,
}

/// fio's sequential 1 MiB O_DIRECT write bandwidth in MB/s (10^6 bytes).
pub fn fio(dir: &Path, fdatasync: bool, seconds: u64, space: FioSpace) -> Result<f64, String> {
    let file = dir.join("fio.dat");
    let size_gib = match space {
        // 6 GiB a second is more than this kind of disk writes; fio lays the file out
        // with fallocate, so the size costs no time. It must fit on the disk.
        FioSpace::Fresh => {
            let want = seconds.max(1) * 6;
            let free_gib = free_bytes(dir)? >> 30;
            if want * 10 > free_gib * 8 {
                return Err(format!(
                    "fio needs {want} GiB of free space in {} for a {seconds} s run; {free_gib} GiB are free",
                    dir.display()
                ));
            }
            want
        }
        FioSpace::Overwrite => 2,
    };
    let mut args = vec![
        "--name=seqwrite".to_string(),
        "--rw=write".into(),
        "--bs=1M".into(),
        format!("--size={size_gib}G"),
    ];
    if fdatasync {
        args.push("--fdatasync=1".into());
    }
    let job = run_fio(&file, seconds, "psync", &args)?;
    let bw = job["write"]["bw_bytes"]
        .as_f64()
        .ok_or("fio output has no write bandwidth")?;
    Ok(bw / 1e6)
}

pub fn free_bytes(dir: &Path) -> Result<u64, String> {
    let st =
        nix::sys::statvfs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    Ok(st.blocks_available() * st.fragment_size())
}

/// Runs fio with `args` on `file` for `seconds` (O_DIRECT through `ioengine`,
/// time-based, JSON output), removes the file, and returns fio's report of its only
/// job.
fn run_fio(
    file: &Path,
    seconds: u64,
    ioengine: &str,
    args: &[String],
) -> Result<serde_json::Value, String> {
    let out = Command::new("fio")
        .args(["--direct=1", "--time_based", "--output-format=json"])
        .arg(format!("--ioengine={ioengine}"))
        .args(args)
        .arg(format!("--runtime={seconds}"))
        .arg(format!("--filename={}", file.display()))
        .output()
        .map_err(|e| format!("cannot run fio (apt-get install fio): {e}"));
    let _ = std::fs::remove_file(file);
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("fio output: {e}"))?;
    Ok(v["jobs"][0].clone())
}

/// iperf3's TCP bandwidth over loopback in MB/s (10^6 bytes), one stream for
/// `seconds`, as the receiver counted it.
pub fn iperf3_loopback(seconds: u64, port: u16) -> Result<f64, String> {
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run iperf3 (apt-get install iperf3): {e}"))?;
    // The server needs a moment to listen; the client retries for up to 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let result = loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-J", "-p", &port.to_string()])
            .arg(format!("-t{seconds}"))
            .output()
            .map_err(|e| format!("cannot run iperf3: {e}"))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            break Ok(bps);
        }
        if std::time::Instant::now() > deadline {
            break Err(format!(
                "iperf3 failed: {}",
                v["error"].as_str().unwrap_or("no bandwidth in its output")
            ));
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    let bps = result?;
    Ok(bps / 8.0 / 1e6)
}

/// fio's sequential 1 MiB O_DIRECT read bandwidth in MB/s of a file it first writes
/// (4 GiB, or less when the disk is short of space): what a consumer of data that is
/// not in memory can get at most. `iodepth` reads are in flight at once: 1 reads
/// with `psync`, more with `io_uring` (`libaio` where io_uring is refused), as a
/// broker reading ahead of its consumers does.
pub fn fio_read(dir: &Path, seconds: u64, iodepth: u32) -> Result<f64, String> {
    let file = dir.join("fio-read.dat");
    let size_gib = (free_bytes(dir)? >> 30).saturating_sub(2).clamp(1, 4);
    let layout = Command::new("fio")
        .args(["--name=layout", "--rw=write", "--bs=1M", "--direct=1"])
        .arg(format!("--size={size_gib}G"))
        .arg(format!("--filename={}", file.display()))
        .output()
        .map_err(|e| format!("cannot run fio (apt-get install fio): {e}"))?;
    if !layout.status.success() {
        let _ = std::fs::remove_file(&file);
        return Err(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&layout.stderr)
        ));
    }
    let args = [
        "--name=seqread".into(),
        "--rw=read".into(),
        "--bs=1M".into(),
        format!("--size={size_gib}G"),
        format!("--iodepth={}", iodepth.max(1)),
    ];
    // io_uring is refused only where the kernel or a seccomp filter forbids it;
    // run_fio has removed the file by then, and the libaio job lays it out again.
    let job = if iodepth <= 1 {
        run_fio(&file, seconds, "psync", &args)?
    } else {
        match run_fio(&file, seconds, "io_uring", &args) {
            Ok(job) => job,
            Err(uring) => {
                return fio_read_libaio(dir, seconds, &args)
                    .map_err(|e| format!("{uring}; with libaio: {e}"));
            }
        }
    };
    let bw = job["read"]["bw_bytes"]
        .as_f64()
        .ok_or("fio output has no read bandwidth")?;
    Ok(bw / 1e6)
}

/// [`fio_read`] with `libaio`; fio lays the file out again itself (a read job on a
/// missing file writes it first).
fn fio_read_libaio(dir: &Path, seconds: u64, args: &[String]) -> Result<f64, String> {
    let job = run_fio(&dir.join("fio-read.dat"), seconds, "libaio", args)?;
    let bw = job["read"]["bw_bytes"]
        .as_f64()
        .ok_or("fio output has no read bandwidth")?;
    Ok(bw / 1e6)
}

/// The latency of one O_DIRECT write and of the fdatasync after it, as fio measures
/// them (`clat` of the write, `lat` of the sync).
#[derive(Debug, Clone, Copy)]
pub struct SyncLatency {
    pub write: Latency,
    pub fdatasync: Latency,
}

/// fio writing `block_bytes` O_DIRECT blocks, each followed by fdatasync, at
/// `mb_per_s` (`None`: one after the other, as fast as the disk goes): the
/// percentiles of one write and of one fdatasync.
pub fn fio_sync_latency(
    dir: &Path,
    seconds: u64,
    block_bytes: usize,
    mb_per_s: Option<f64>,
) -> Result<SyncLatency, String> {
    let file = dir.join("fio-lat.dat");
    let mut args = vec![
        "--name=synclat".to_string(),
        "--rw=write".into(),
        "--fdatasync=1".into(),
        "--size=4G".into(),
        format!("--bs={block_bytes}"),
    ];
    if let Some(mb) = mb_per_s {
        args.push(format!("--rate={:.0}", (mb * 1e6).max(1.0)));
    }
    let job = run_fio(&file, seconds, "psync", &args)?;
    Ok(SyncLatency {
        write: fio_latency(&job["write"]["clat_ns"]).ok_or("fio output has no write latency")?,
        fdatasync: fio_latency(&job["sync"]["lat_ns"])
            .ok_or("fio output has no fdatasync latency")?,
    })
}

/// One of fio's latency objects (nanoseconds, with percentiles) in milliseconds.
fn fio_latency(v: &serde_json::Value) -> Option<Latency> {
    let ms = |ns: &serde_json::Value| ns.as_f64().map(|ns| ns / 1e6);
    let pct = &v["percentile"];
    Some(Latency {
        p50: ms(&pct["50.000000"])?,
        p99: ms(&pct["99.000000"])?,
        p999: ms(&pct["99.900000"])?,
        max: ms(&v["max"])?,
        samples: v["N"].as_u64()?,
    })
}

/// fio writing `block_bytes` O_DIRECT blocks, each followed by fdatasync, at
/// `mb_per_s`: the p99 of one write plus the p99 of one fdatasync, in ms (the disk's
/// own latency for what an acks=all produce of that size at that rate needs).
pub fn fio_sync_latency_p99(
    dir: &Path,
    seconds: u64,
    block_bytes: usize,
    mb_per_s: f64,
) -> Result<f64, String> {
    let l = fio_sync_latency(dir, seconds, block_bytes, Some(mb_per_s))?;
    Ok(l.write.p99 + l.fdatasync.p99)
}

/// Writes dirty pages out and empties the page cache (needs root), so the next read
/// of any file comes from the disk.
pub fn drop_page_cache() -> Result<(), String> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("cannot drop the page cache (needs root): {e}"))
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub samples: u64,
}

impl Latency {
    #[allow(clippy::cast_precision_loss)] // Microseconds far below 2^52.
    pub fn of(hist: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(hist.value_at_quantile(0.5)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            samples: hist.len(),
        }
    }
}

/// A histogram of microseconds from 1 µs to 100 s.
#[allow(clippy::expect_used)] // Constant bounds hdrhistogram accepts.
pub fn micros_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

/// Most blocks one write of the disk reference carries.
const GROUP_MAX: u32 = 256;

/// The disk's own latency for durable appends, measured the way the benchmarks
/// measure Sluice: appends of `block_bytes` fall due at `rate` per second; whenever
/// the previous write is done, everything due so far goes out as one O_DIRECT write
/// followed by one fdatasync (an ideal group commit, at most 256 blocks at once),
/// into a file reserved with fallocate; each append's latency runs from the moment it
/// was due to the end of the fdatasync that covered it (so a stall of the disk counts
/// for every append it delays, not once as in fio's per-I/O figures). `cpu` pins the
/// thread. What one stream of group commits gets from this disk at that load (a
/// log syncing several files at once can overlap their fdatasyncs and do better).
pub fn disk_sync_latency(
    dir: &Path,
    seconds: u64,
    block_bytes: usize,
    rate: f64,
    cpu: Option<usize>,
) -> Result<Latency, String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::time::{Duration, Instant};

    const ALIGN: usize = 4096;
    if !(rate.is_finite() && rate > 0.0) || block_bytes == 0 || seconds == 0 {
        return Err("the rate, the block size and the time must be positive".into());
    }
    let path = dir.join("disk-latency.dat");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = u32::try_from(Duration::from_secs(seconds).as_nanos() / interval.as_nanos())
        .map_err(|_| "too many appends for the disk reference")?
        .max(1);
    let size = u64::from(total) * block_bytes as u64 + u64::from(GROUP_MAX) * ALIGN as u64;
    if size > free_bytes(dir)? / 2 {
        return Err(format!(
            "the disk latency reference needs {} MiB free in {}",
            size >> 19,
            dir.display()
        ));
    }
    let run = || -> Result<Latency, String> {
        if let Some(cpu) = cpu {
            let mut set = nix::sched::CpuSet::new();
            set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(|e| format!("pin to CPU {cpu}: {e}"))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            nix::fcntl::FallocateFlags::empty(),
            0,
            i64::try_from(size).map_err(|_| "file too large")?,
        )
        .map_err(|e| format!("fallocate {}: {e}", path.display()))?;
        file.sync_all()
            .map_err(|e| format!("fsync {}: {e}", path.display()))?;
        let cap = (GROUP_MAX as usize * block_bytes).div_ceil(ALIGN) * ALIGN + ALIGN;
        let layout = std::alloc::Layout::from_size_align(cap, ALIGN)
            .map_err(|e| format!("buffer layout: {e}"))?;
        // SAFETY: `layout` has a non-zero size; the pointer is checked, only read as
        // `cap` zeroed bytes, and freed with the same layout below.
        let buf = unsafe { std::alloc::alloc_zeroed(layout) };
        if buf.is_null() {
            return Err("cannot allocate the write buffer".into());
        }
        // SAFETY: `buf` points at `cap` zeroed bytes owned by this function.
        let data = unsafe { std::slice::from_raw_parts(buf, cap) };
        let mut hist = micros_histogram();
        let start = Instant::now();
        let (mut done, mut written) = (0u32, 0u64);
        let mut result = Ok(());
        while done < total {
            let due = start + interval * done;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Everything due by now, as the log would have it buffered.
            let elapsed = start.elapsed().as_nanos();
            let due_now = u32::try_from(elapsed / interval.as_nanos() + 1).unwrap_or(total);
            let n = due_now.min(total).saturating_sub(done).clamp(1, GROUP_MAX);
            // The log writes whole blocks from the start of the block holding its tail.
            let from = written / ALIGN as u64 * ALIGN as u64;
            let end = written + u64::from(n) * block_bytes as u64;
            let len = usize::try_from(end.div_ceil(ALIGN as u64) * ALIGN as u64 - from)
                .unwrap_or(cap)
                .min(cap);
            let r = file
                .write_all_at(&data[..len], from)
                .and_then(|()| file.sync_data());
            if let Err(e) = r {
                result = Err(format!("write {}: {e}", path.display()));
                break;
            }
            for i in done..done + n {
                let us = (start + interval * i).elapsed().as_micros();
                hist.saturating_record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
            }
            done += n;
            written = end;
        }
        // SAFETY: allocated above with this layout and not freed before.
        unsafe { std::alloc::dealloc(buf, layout) };
        result.map(|()| Latency::of(&hist))
    };
    let r = std::thread::scope(|s| s.spawn(run).join())
        .map_err(|_| "the disk latency thread panicked".to_string())?;
    let _ = std::fs::remove_file(&path);
    r
}
