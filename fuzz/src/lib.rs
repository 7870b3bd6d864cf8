//! Helpers shared by the fuzz targets in `fuzz_targets/`; see the README's "Fuzzing" section.
//!
//! The targets run under libFuzzer, built by `scripts/fuzz.sh` on the stable toolchain. What
//! they have in common lives here: delivering request bytes the way the server's transport does
//! ([`transport`]), an independent transcription of the signature rules to compare the server
//! with ([`reference`]), the edit script and the checks of the signature targets ([`script`],
//! [`signing`]), the check that error answers stay readable ([`wellformed`]) and the catalog
//! loader with a writer for round trips ([`catalog`], [`catalog_json`]).

/// The catalog loader of `ens-server` (which the binary and in-process test servers call),
/// compiled from its own source file: depending on the crate would build the whole server
/// (storage engines, HTTP, TLS) into every fuzz build. The file is self-contained, so this is
/// the code the server runs, not a copy.
#[path = "../../crates/ens-server/src/catalog.rs"]
pub mod catalog;
pub mod catalog_json;
pub mod reference;
pub mod script;
pub mod signing;
pub mod transport;
pub mod wellformed;
