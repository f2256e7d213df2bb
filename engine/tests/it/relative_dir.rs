//! A relative data directory works like an absolute one. The engine resolves it
//! against the working directory once, at start; before that fix every partition
//! created under `./sluice-data` went offline (glommio opened the relative path
//! against a directory descriptor of its own and failed with EBADF).
//!
//! The working directory belongs to the whole process, so the engine runs in a child
//! process started in a fresh directory (tests of one binary may share a process).

use std::process::Command;

use crate::common::*;

const CWD_VAR: &str = "SLUICE_RELATIVE_DIR_CHILD";
const DATA_DIR: &str = "./relative-data";

/// Not a test on its own: what `a_relative_data_dir_is_resolved_once` runs in a
/// child process whose working directory is a new temporary directory.
#[test]
#[ignore = "runs only as the child of a_relative_data_dir_is_resolved_once"]
fn relative_dir_child_process() {
    assert!(
        std::env::var_os(CWD_VAR).is_some(),
        "run by a_relative_data_dir_is_resolved_once"
    );
    let t = tp("rel", 0);
    let cwd = std::env::current_dir().expect("working directory");
    let engine = start(small_config(std::path::Path::new(DATA_DIR), 2));
    assert_eq!(engine.data_dir(), cwd.join("relative-data"));
    create(&engine, std::slice::from_ref(&t), None);
    for i in 0..20 {
        append(&engine, &t, batch(&format!("b{i}"), 5, i), true);
    }
    engine.shutdown().expect("clean shutdown");
    // Started again: recovery, checkpoints and side files all under the same path.
    let engine = start(small_config(std::path::Path::new(DATA_DIR), 2));
    let values: Vec<String> = read_all(&engine, &t, 0)
        .iter()
        .flat_map(|b| decode(b).1)
        .collect();
    assert_eq!(values.len(), 100);
    assert_eq!(values[99], "b19-4");
    engine.shutdown().expect("clean shutdown");
    println!("RELATIVE-OK");
}

#[test]
fn a_relative_data_dir_is_resolved_once() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "relative_dir::relative_dir_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CWD_VAR, "1")
        .current_dir(cwd.path())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("RELATIVE-OK"),
        "child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The data landed in the child's working directory, where the path points.
    let log = cwd
        .path()
        .join("relative-data/rel-0/00000000000000000000.log");
    assert!(log.is_file(), "{} missing", log.display());
}
