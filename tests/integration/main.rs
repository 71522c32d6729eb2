//! The integration tests: one binary (one link), the real server on port 0.

// Enabled once the HTTP layer is compiled in:
// mod api;
// mod helpers;
