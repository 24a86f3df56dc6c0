//! `banyan-codec-bench`: the criterion benchmarks of `banyan-moq`'s codec, in
//! `benches/codec.rs`. The library is empty (Cargo wants a target besides benchmarks); the
//! package exists so that `cargo bench -p banyan-codec-bench` builds only the codec (without
//! its default `session` feature) and criterion, not the dev-dependencies of `banyan-moq`'s
//! own tests (the session stack, interop peers), which took minutes to build in release.
