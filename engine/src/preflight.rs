//! Checks, before any shard starts, that this host can run the engine. glommio
//! panics or fails obscurely without io_uring or enough locked memory; here each
//! problem becomes one message that names the fix.

use nix::sys::resource::{getrlimit, Resource};

use crate::error::{Error, Result};

/// glommio refuses to start its reactor below this `RLIMIT_MEMLOCK`.
pub const MEMLOCK_BYTES_MIN: u64 = 512 << 10;

/// Runs every check; the error text is meant for an operator.
pub fn check() -> Result<()> {
    check_memlock()?;
    check_io_uring()
}

fn check_memlock() -> Result<()> {
    let (soft, _hard) = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map_err(|e| Error::Preflight(format!("cannot read RLIMIT_MEMLOCK: {e}")))?;
    if soft < MEMLOCK_BYTES_MIN {
        return Err(Error::Preflight(format!(
            "RLIMIT_MEMLOCK is {soft} bytes; io_uring needs at least {MEMLOCK_BYTES_MIN}. \
             Raise it: `LimitMEMLOCK=infinity` in the systemd unit, `ulimit -l unlimited` in a shell, \
             or a memlock line in /etc/security/limits.conf"
        )));
    }
    Ok(())
}

fn check_io_uring() -> Result<()> {
    match io_uring::IoUring::new(8) {
        Ok(_) => Ok(()),
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
            Err(Error::Preflight(format!(
                "io_uring is not available ({e}); kernel.io_uring_disabled = {disabled}. \
                 Enable it with `sysctl -w kernel.io_uring_disabled=0` (persist it in /etc/sysctl.d/), \
                 or set kernel.io_uring_group to a group the sluice user is in; \
                 in a container, allow the io_uring syscalls in its seccomp profile"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_host_passes() {
        // The suite runs where the engine must run; a failure here names the fix.
        if let Err(e) = super::check() {
            panic!("{e}");
        }
    }
}
