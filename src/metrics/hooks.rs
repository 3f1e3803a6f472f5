//! The HTTP server's hooks: every answered request and every connection is counted, and
//! `GET /metrics` renders the figures.

use super::Metrics;
use crate::serve::{RequestDone, ServeHooks};

impl ServeHooks for Metrics {
    fn connection_opened(&self) {
        Metrics::connection_opened(self);
    }

    fn connection_closed(&self) {
        Metrics::connection_closed(self);
    }

    fn request_done(&self, done: &RequestDone<'_>) {
        self.http_request(done.endpoint, done.status, done.latency);
    }

    /// The classic text format: the server answers `/metrics` as `text/plain; version=0.0.4`.
    fn metrics(&self, _store: Option<&rewind_state::Reader>) -> Option<String> {
        match self.render(None) {
            Ok(rendered) => Some(rendered.body),
            // Rendering into a String fails only if an encoder refuses a figure; the server
            // then answers 404, and the reason is here.
            Err(e) => {
                eprintln!("rewind: serve: {e}");
                None
            }
        }
    }
}
