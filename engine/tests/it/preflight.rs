//! The engine refuses to start on a host it cannot run on, with a message that
//! names the fix, instead of a panic inside glommio.

use std::os::unix::process::CommandExt;
use std::process::Command;

use sluice_engine::{Engine, EngineConfig};

const DIR_VAR: &str = "SLUICE_PREFLIGHT_CHILD_DIR";

/// Not a test on its own: started by the test below with a tiny RLIMIT_MEMLOCK.
#[test]
#[ignore = "runs only as the child of a_low_memlock_limit_is_refused_with_the_fix_named"]
fn preflight_child_process() {
    let dir = std::env::var(DIR_VAR).expect("run by the preflight test");
    match Engine::start(EngineConfig::new(dir)) {
        Ok(e) => {
            let _ = e.shutdown();
            println!("STARTED");
        }
        Err(e) => println!("REFUSED: {e}"),
    }
}

#[test]
fn a_low_memlock_limit_is_refused_with_the_fix_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "preflight::preflight_child_process",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DIR_VAR, dir.path());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_MEMLOCK,
                64 << 10,
                64 << 10,
            )
            .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().expect("child ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child did not panic: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("REFUSED: RLIMIT_MEMLOCK is 65536 bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("LimitMEMLOCK=") && stdout.contains("ulimit -l"),
        "names the fix: {stdout}"
    );
    assert!(!dir.path().join("00000000000000000000.log").exists());
}

#[test]
fn a_second_engine_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = crate::common::start(crate::common::small_config(dir.path(), 1));
    let second = Engine::start(crate::common::small_config(dir.path(), 1));
    let err = second.err().expect("the directory is locked");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    first.shutdown().expect("shutdown");
    let third = Engine::start(crate::common::small_config(dir.path(), 1))
        .expect("free again after shutdown");
    third.shutdown().expect("shutdown");
}
