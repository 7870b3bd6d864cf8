//! RAM policy documents and their evaluation (in progress).
