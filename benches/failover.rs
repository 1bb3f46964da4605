//! Placeholder so the manifest resolves on this branch; the real benchmark lands on main.
fn main() {}
