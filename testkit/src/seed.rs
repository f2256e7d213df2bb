//! Seeded randomness for fault schedules.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// The environment variable that replays a schedule.
pub const SEED_VAR: &str = "SLUICE_TEST_SEED";

/// A test's seed: from `SLUICE_TEST_SEED` when set (a replay), else random. It is
/// printed when taken, and again with the command that replays it if the test
/// panics while the `Seed` is alive.
#[derive(Debug)]
pub struct Seed {
    value: u64,
    test: String,
}

impl Seed {
    /// The seed for the test named `test`.
    pub fn take(test: &str) -> Seed {
        let value = std::env::var(SEED_VAR)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("{test}: seed {value} ({SEED_VAR}={value} replays it)");
        Seed {
            value,
            test: test.to_string(),
        }
    }

    pub fn value(&self) -> u64 {
        self.value
    }

    /// A generator for this seed (the same sequence for the same seed).
    pub fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.value)
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}: failed with seed {}; replay: {SEED_VAR}={} cargo nextest run {}",
                self.test, self.value, self.value, self.test
            );
        }
    }
}
