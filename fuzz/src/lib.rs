//! Helpers shared by the fuzz targets in `fuzz_targets/`; see the README's "Fuzzing" section.
//!
//! The targets run under libFuzzer, built by `scripts/fuzz.sh` on the stable toolchain. What
//! they have in common lives here: delivering request bytes the way the server's transport does
//! ([`transport`]), an independent transcription of the signature rules to compare the server
//! with ([`reference`]), the edit script and the checks of the signature targets ([`script`],
//! [`signing`]), the check that error answers stay readable ([`wellformed`]) and the catalog
//! loader with a writer for round trips ([`catalog`], [`catalog_json`]).

/// The catalog loader of the `ens-images` binary, compiled from its own source file: the binary
/// crate has no library, and depending on it would build the whole server (storage engines,
/// HTTP, TLS) into every fuzz build. The file is self-contained, so this is the code the
/// binary runs, not a copy.
#[path = "../../crates/ens-images/src/catalog.rs"]
pub mod catalog;
pub mod catalog_json;
pub mod reference;
pub mod script;
pub mod signing;
pub mod transport;
pub mod wellformed;
