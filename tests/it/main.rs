//! Integration tests: the pipeline against librdkafka's in-process mock cluster (the real
//! Kafka protocol) and real redb files, through the library and through the binary.

mod broker;
mod cli;
mod common;
mod consent;
mod dead_letters;
mod erasure;
mod metrics;
mod oracle;
mod privacy;
mod replay;
mod restart;
mod retention;
mod serve;
mod served;
mod snapshot;
mod store_faults;
mod time_rules;
