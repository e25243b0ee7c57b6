//! `cargo test -p oncely-conformance`: runs every scenario in `scenarios/` on every backend.
//! `ONCELY_CONFORMANCE_FILTER=substring` runs only the scenarios whose name contains it.

fn main() {
    std::process::exit(oncely_conformance::main_from_env());
}
