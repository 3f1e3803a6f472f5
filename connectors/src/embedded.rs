//! The embedded Kafka cluster: librdkafka's in-process mock cluster, which speaks the real
//! Kafka protocol on a loopback port, so the engine reads it exactly as it reads a real broker.
//!
//! # Constraints
//! - The log lives only as long as the [`EmbeddedCluster`] value.
//! - Each partition keeps only its newest ~100k messages (or 5 MiB): a consumer that falls
//!   further behind finds its next offset gone (reported, never skipped, with
//!   `auto.offset.reset=error`).
//! - The handle is not `Send`: keep it on the thread that made it; clients on any thread
//!   reach it through [`EmbeddedCluster::bootstrap_servers`].

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::{ConnectorError, Result};

pub struct EmbeddedCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl EmbeddedCluster {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<EmbeddedCluster> {
        let cluster = MockCluster::new(1).map_err(ConnectorError::Setup)?;
        let bootstrap = cluster.bootstrap_servers();
        Ok(EmbeddedCluster { cluster, bootstrap })
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
        self.cluster
            .create_topic(topic, partitions, 1)
            .map_err(ConnectorError::Setup)
    }

    /// Takes the broker down (it drops its connections and refuses new ones) or brings it
    /// back: an outage, for tests of what clients do meanwhile.
    pub fn set_broker_up(&self, up: bool) -> Result<()> {
        let result = if up {
            self.cluster.broker_up(-1)
        } else {
            self.cluster.broker_down(-1)
        };
        result.map_err(ConnectorError::Setup)
    }

    /// `host:port` of the cluster's broker, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}
