//! p2pe benchmarks live in `benches/` (criterion) and system harnesses.
