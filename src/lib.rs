//! rewind: an embedded, incremental feature store for streaming-video personalization.
//!
//! Viewer events arrive on Kafka; [`decode`] and [`privacy`] turn them into pseudonymous
//! events at the door; [`engine`] runs the feature dataflows of `rewind-dataflows` over them in
//! event time ([`time`]) and keeps every feature's current value and history in the redb store
//! of `rewind-state`. [`embedded`] wires an in-process Kafka cluster and the workload
//! generator ([`workload`]) to the engine: the one-command default of `rewind run`.

pub mod audit;
pub mod bench;
pub mod decode;
pub mod embedded;
pub mod engine;
pub mod metrics;
pub mod privacy;
pub mod purpose;
pub mod serve;
pub mod served;
pub mod snapshot;
pub mod time;
pub mod utc;
pub mod verify;
pub mod workload;

pub use engine::{LogSource, RunConfig, RunSummary, Shared};
pub use time::TimePolicy;
