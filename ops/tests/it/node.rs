//! Real `sluice serve` processes for the tests: the test kit's (`sluice-testkit`).

pub use sluice_testkit::{free_fixed_port, http, run, try_http, Node};
