//! Text analysis for the pipeline's stages: pure, synchronous functions over canonical
//! [`Record`](mcp_shared::domain::pipeline::Record)s, cheap enough to run inline per record.
//!
//! - [`bias`]: per-category scores (gender, race/ethnicity, age, religion, disability, sexual
//!   orientation) for generalising or exclusionary statements about groups, from a lexicon and
//!   a handful of sentence patterns; neutral mentions stay low.
//! - [`quality`]: a 0..1 score from named features (turn count, role balance, lexical
//!   diversity, truncation, repetition, leftover template placeholders).
//! - [`dedup`]: exact keys and SimHash near-duplicate detection, with hashes that are stable
//!   across processes so shards can be compared.

pub mod bias;
pub mod dedup;
pub mod quality;
