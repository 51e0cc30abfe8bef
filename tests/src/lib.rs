//! Shared fixtures of the workspace integration tests (the tests themselves are in `tests/tests/`).
