"""Fixtures for the Python client tests: where the broker is, and fresh topic names.

The broker is a real `sluice serve` started by the Rust test ops/tests/it/python.rs,
which passes its address in SLUICE_BOOTSTRAP. To run these by hand, start one
(`target/debug/sluice serve --data-dir DIR --listen 127.0.0.1:0`) and export the
address it logs.
"""

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def bootstrap():
    addr = os.environ.get("SLUICE_BOOTSTRAP", "")
    if not addr:
        pytest.fail(
            "SLUICE_BOOTSTRAP is not set: start `sluice serve` and export its "
            "host:port, or run `cargo nextest run -p sluice --test it python`",
            pytrace=False,
        )
    return addr


@pytest.fixture
def topic_name(request):
    """A function making topic names unique to this test and this run."""

    def make(label="t"):
        # Kafka topic names allow [a-zA-Z0-9._-] and at most 249 characters.
        test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
        return f"py-{test}-{label}-{uuid.uuid4().hex[:12]}"

    return make
