//! Topic administration on a real cluster: what the benchmark and the broker test need before
//! producing (the embedded cluster makes topics through its own API).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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
