//! Placeholder: the Python client tests are being written (owned by the helper writing ops/tests/python).
