//! `rewind serve`: current feature values over HTTP, beside a `rewind run` writing the store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rewind::privacy::{KeyError, KeySource, Pseudonymizer, STORE_KEY_FILE};
use rewind::serve::{Limits, NoHooks, ServeConfig, Server, Source};

/// Serve the store's current feature values over HTTP: Feast's `POST /get-online-features`,
/// the native `GET /v1/viewers/{id}`, `GET /v1/titles/{id}` and `POST /v1/batch`, and
/// `GET /health`.
///
/// Reads the store read-only while `rewind run` writes it, following each commit. It may start
/// before the store exists: it answers 503 until the run creates it.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    #[command(flatten)]
    http: HttpArgs,
    /// The pseudonymization key, for requests that give raw account ids (`user_id`); else
    /// REWIND_PSEUDONYM_KEY, else the store's own `pseudonym.key` (embedded default).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Runtime threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

/// What `serve` and `run --serve` share.
#[derive(Debug, Args)]
pub(super) struct HttpArgs {
    /// Address to listen on. Loopback by default: serve other hosts through a TLS proxy.
    #[arg(long, default_value = "127.0.0.1:6566")]
    pub listen: SocketAddr,
    /// A file holding a bearer token every request must carry (`Authorization: Bearer …`).
    /// Like a key file, it must not be readable by group or others.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most entities per request.
    #[arg(long, default_value_t = 10_000)]
    pub max_entities: usize,
}

impl HttpArgs {
    pub(super) fn config(
        &self,
        listen: SocketAddr,
        door: Option<Pseudonymizer>,
        threads: usize,
    ) -> anyhow::Result<ServeConfig> {
        let token = self.token_file.as_deref().map(load_token).transpose()?;
        Ok(ServeConfig {
            listen,
            token,
            door,
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_entities: self.max_entities,
                ..Limits::default()
            },
            threads,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let door = serving_key(args.key_file.as_deref(), &args.store)?;
    let config = args
        .http
        .config(args.http.listen, door, args.threads.into())?;
    let source = Source::Dir(args.store.clone());
    let server = Server::start(config, source, Arc::new(NoHooks))?;
    eprintln!(
        "rewind: serving http://{} from the store in {}; Ctrl-C stops",
        server.addr(),
        args.store.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    ctrlc::set_handler(move || stopper.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    Ok(())
}

/// The key to pseudonymize `user_id`s with: named, from the environment, or the store's own;
/// `None` when there is none (such requests are then refused). Never creates one.
fn serving_key(key_file: Option<&Path>, store: &Path) -> anyhow::Result<Option<Pseudonymizer>> {
    let in_store = store.join(STORE_KEY_FILE);
    let key_file = key_file.map(Path::to_path_buf).or_else(|| {
        (std::env::var_os(rewind::privacy::KEY_ENV).is_none() && in_store.exists())
            .then_some(in_store)
    });
    match Pseudonymizer::load(&KeySource {
        key_file,
        create_in: None,
    }) {
        Ok(door) => Ok(Some(door)),
        Err(KeyError::Missing) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A bearer token from its file: trailing newlines dropped, never empty, private like a key.
pub(super) fn load_token(path: &Path) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading token file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "token file {} may be read by group or others (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']).to_string();
    if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
        bail!(
            "token file {} must hold one token of printable ASCII without spaces",
            path.display()
        );
    }
    Ok(token)
}
