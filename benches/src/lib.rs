//! Shared pieces of the benchmark binaries: the reference measurements (`fio` on the
//! disk under test, `iperf3` over loopback) that figures are compared with.

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
    let job = run_fio(&file, seconds, &args)?;
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

/// Runs fio with `args` on `file` for `seconds` (time-based, JSON output), removes
/// the file, and returns fio's report of its only job.
fn run_fio(file: &Path, seconds: u64, args: &[String]) -> Result<serde_json::Value, String> {
    let out = Command::new("fio")
        .args([
            "--direct=1",
            "--ioengine=psync",
            "--time_based",
            "--output-format=json",
        ])
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
/// not in memory can get at most.
pub fn fio_read(dir: &Path, seconds: u64) -> Result<f64, String> {
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
    let job = run_fio(
        &file,
        seconds,
        &[
            "--name=seqread".into(),
            "--rw=read".into(),
            "--bs=1M".into(),
            format!("--size={size_gib}G"),
        ],
    )?;
    let bw = job["read"]["bw_bytes"]
        .as_f64()
        .ok_or("fio output has no read bandwidth")?;
    Ok(bw / 1e6)
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
    let file = dir.join("fio-lat.dat");
    let job = run_fio(
        &file,
        seconds,
        &[
            "--name=synclat".into(),
            "--rw=write".into(),
            "--fdatasync=1".into(),
            "--size=4G".into(),
            format!("--bs={block_bytes}"),
            format!("--rate={:.0}", (mb_per_s * 1e6).max(1.0)),
        ],
    )?;
    let write = job["write"]["clat_ns"]["percentile"]["99.000000"]
        .as_f64()
        .ok_or("fio output has no write latency")?;
    let sync = job["sync"]["lat_ns"]["percentile"]["99.000000"]
        .as_f64()
        .ok_or("fio output has no fdatasync latency")?;
    Ok((write + sync) / 1e6)
}
