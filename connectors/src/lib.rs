//! rewind's connectors: reading and writing Kafka topics (through rdkafka and its bundled
//! librdkafka), the embedded in-process Kafka cluster, and JSON-lines files.
//!
//! Nothing here knows about features or the event schema: a source hands out raw records with
//! their position, and the engine decides what they mean.

pub mod admin;
pub mod embedded;
pub mod file;
pub mod kafka;

pub use admin::{ensure_topic, topic_retention_ms};
pub use embedded::EmbeddedCluster;
pub use kafka::{KafkaSource, Polled, Producer, RecordRef, TopicInfo};

/// Errors of the connectors. `retryable` says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("kafka client setup failed: {0}")]
    Setup(rdkafka::error::KafkaError),
    #[error("topic {topic:?} not found on {brokers} ({detail})")]
    NoTopic {
        topic: String,
        brokers: String,
        detail: String,
    },
    #[error(
        "partition {partition} of {topic:?} no longer holds offset {next_offset} (the log was \
         trimmed or replaced); rewind never skips data: replay into a fresh store"
    )]
    OffsetGone {
        topic: String,
        partition: u32,
        next_offset: u64,
    },
    #[error("kafka consume failed (maybe transient, a retry may help): {0}")]
    Consume(rdkafka::error::KafkaError),
    #[error("kafka cluster unreachable (maybe transient, a retry may help): {0}")]
    Unreachable(String),
    #[error("kafka metadata request failed (maybe transient, a retry may help): {0}")]
    Metadata(rdkafka::error::KafkaError),
    #[error("kafka produce failed: {0}")]
    Produce(String),
    #[error("kafka admin request failed: {0}")]
    Admin(String),
    #[error("reading {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl ConnectorError {
    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        use rdkafka::error::KafkaError::MessageConsumption;
        use rdkafka::types::RDKafkaErrorCode as Code;
        match self {
            // The cluster or the way to it is down: librdkafka reconnects by itself. Anything
            // else (a topic gone, no authorisation) will not heal by waiting.
            ConnectorError::Consume(MessageConsumption(code)) => matches!(
                code,
                Code::AllBrokersDown
                    | Code::BrokerTransportFailure
                    | Code::NetworkException
                    | Code::RequestTimedOut
                    | Code::OperationTimedOut
                    | Code::BrokerNotAvailable
                    | Code::LeaderNotAvailable
                    | Code::NotLeaderForPartition
                    | Code::Resolve
            ),
            ConnectorError::Metadata(_) | ConnectorError::Unreachable(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
