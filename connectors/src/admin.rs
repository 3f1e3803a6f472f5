//! Topic administration on a real cluster: what the benchmark and the broker test need before
//! producing (the embedded cluster makes topics through its own API).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::{ConnectorError, Result};

/// Creates `topic` with `partitions` partitions (replication 1) unless it exists already.
///
/// An existing topic is left as it is, whatever its partition count: the caller reads the
/// count back from metadata rather than trusting this call.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: u32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(ConnectorError::Setup)?;
    let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&new], &options)).map_err(ConnectorError::Setup)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ConnectorError::Admin(format!(
                    "creating topic {name:?} on {brokers}: {code:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Each topic's `retention.ms` as the cluster reports it (DescribeConfigs): how long raw
/// events stay in the log, outside anything rewind purges. `-1` is Kafka's "forever".
///
/// A topic the cluster does not know is an error naming it, as is a cluster that does not
/// answer DescribeConfigs (librdkafka's mock cluster, for one).
pub fn topic_retention_ms(brokers: &str, topics: &[&str]) -> Result<Vec<(String, i64)>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(ConnectorError::Setup)?;
    let resources: Vec<_> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.describe_configs(&resources, &options))
        .map_err(|e| ConnectorError::Admin(format!("asking {brokers} for topic configs: {e}")))?;
    topics
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            let resource = result.map_err(|code| {
                ConnectorError::Admin(format!("topic {topic:?} on {brokers}: {code:?}"))
            })?;
            let value = resource
                .get("retention.ms")
                .and_then(|entry| entry.value.as_deref())
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        resource.entries.iter().map(|e| e.name.as_str()).collect();
                    ConnectorError::Admin(format!(
                        "{brokers} reports no retention.ms for topic {topic:?} (it reports: {})",
                        match names.is_empty() {
                            true => "no config at all".to_string(),
                            false => names.join(", "),
                        }
                    ))
                })?;
            let ms = value.parse::<i64>().map_err(|_| {
                ConnectorError::Admin(format!(
                    "{brokers} reports retention.ms {value:?} for topic {topic:?}, not a number"
                ))
            })?;
            Ok((topic.to_string(), ms))
        })
        .collect()
}

/// rdkafka's admin calls are futures completed by its own polling thread; this waits on one
/// without pulling an async runtime into the crate.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            // A spurious unpark only costs another poll; the timeout guards a lost wake-up.
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}
