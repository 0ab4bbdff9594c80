//! Adapters for Dispatch: each one arrives behind its own cargo feature with its issue.
