//! `rewind erase`: a viewer's right to erasure, for a store built from a file (a live run takes
//! erasures from its `erasure` topic instead).

use super::outln;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rewind::decode::MAX_ID_BYTES;
use rewind::privacy::{KeySource, Pseudonymizer, STORE_KEY_FILE};
use rewind::served::file::{LogFile, slot_paths};
use rewind_state::{Commit, Erased, Erasure, Store, StoreError};

/// Erase one viewer from a store: its current values, its whole history and its served-log
/// rows are deleted, and the files are rewritten so that no byte of them remains. The store
/// keeps only a keyed hash of the viewer and the erasure's time, as proof that it happened.
///
/// The account id is pseudonymized with the store's key, as the door does; it is never printed
/// or stored. The store must not be written meanwhile: stop `rewind run` first (a live run
/// erases through its erasure topic). Run it again for the same account: nothing more is
/// removed.
#[derive(Debug, Args)]
pub struct EraseArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    /// The raw account id, as producers send it in `user_id`.
    // An id may start with '-': taken as the value, never echoed back as an unknown option.
    #[arg(long, allow_hyphen_values = true)]
    user_id: String,
    /// The erasure's time (ms since the epoch): the account's events before it are the ones
    /// erased. Default: the store's frontier (everything it holds).
    #[arg(long)]
    ts: Option<u64>,
    /// The pseudonym key file (else REWIND_PSEUDONYM_KEY, else the store's own key file).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

/// Event times outside these years are implausible, as at the door (`docs/events.md`).
const PLAUSIBLE_MS: std::ops::Range<u64> = 946_684_800_000..4_102_444_800_000;

pub fn run(args: EraseArgs) -> anyhow::Result<()> {
    check_user_id(&args.user_id)?;
    if let Some(ts) = args.ts.filter(|ts| !PLAUSIBLE_MS.contains(ts)) {
        bail!("--ts {ts} is not a plausible time (ms since the epoch, years 2000 to 2099)");
    }
    let file = args.store.join(rewind_state::FILE_NAME);
    if !file.exists() {
        bail!(
            "no store in {}: name the directory a `rewind replay` or `rewind run` wrote",
            args.store.display()
        );
    }
    let door = key(args.key_file.as_deref(), &args.store)?;
    let store = open_writer(&args.store)?;
    // Claimed before anything is erased: a log a server holds stops the erasure whole.
    let logs = claim_served_logs(&args.store)?;
    check_fingerprint(&store, &door)?;
    let frontier_ms = store.snapshot()?.frontier_ms()?.with_context(|| {
        format!(
            "the store in {} has no output yet: there is nothing to erase",
            args.store.display()
        )
    })?;
    let ts_ms = args.ts.unwrap_or(frontier_ms);
    if ts_ms > frontier_ms {
        bail!(
            "--ts {ts_ms} is after the store's frontier ({frontier_ms}): the store holds no \
             event that late; leave --ts out to erase everything it holds"
        );
    }
    let viewer = door.viewer_id(&args.user_id);
    let erasure = Erasure {
        entity_kind: "viewer",
        entity_id: viewer.to_string().into(),
        ts_ms,
        tick_ms: frontier_ms,
        token: door.erasure_token(&viewer),
    };
    let commit = Commit {
        frontier_ms,
        erasures: vec![erasure],
        ..Commit::default()
    };
    let started = std::time::Instant::now();
    let erased = store.commit(&commit)?.erased;
    let commit_elapsed = started.elapsed().saturating_sub(erased.scrub.elapsed);
    let served = erase_served(logs, &viewer.to_string())?;
    report(&store, &erased, served, commit_elapsed)?;
    outln!("this one at tick {frontier_ms} (erasure time {ts_ms})")?;
    Ok(())
}

/// The id is checked as the door checks `user_id`; the error never shows it.
fn check_user_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() {
        bail!("--user-id is empty: give the account id producers send as `user_id`");
    }
    if id.len() > MAX_ID_BYTES {
        bail!(
            "--user-id is {} bytes, and no account id is over {MAX_ID_BYTES} (the door refuses \
             such events, so no store holds one)",
            id.len()
        );
    }
    Ok(())
}

/// The store's key: named, from the environment, or the store's own file. Never created: a new
/// key would pseudonymize the account to someone the store never saw.
fn key(key_file: Option<&Path>, store: &Path) -> anyhow::Result<Pseudonymizer> {
    let in_store = store.join(STORE_KEY_FILE);
    let key_file = key_file.map(Path::to_path_buf).or_else(|| {
        (std::env::var_os(rewind::privacy::KEY_ENV).is_none() && in_store.exists())
            .then_some(in_store)
    });
    Ok(Pseudonymizer::load(&KeySource {
        key_file,
        create_in: None,
    })?)
}

fn open_writer(dir: &Path) -> anyhow::Result<Store> {
    match Store::open(dir) {
        Err(StoreError::Busy { path, .. }) => bail!(
            "store {} is being written by another process (a `rewind run`, `rewind replay` or \
             another `rewind erase`): stop it, then erase again. A live run erases through its \
             `erasure` topic instead: send {{\"user_id\": …, \"ts\": …}} there",
            path.display()
        ),
        other => Ok(other?),
    }
}

/// The account must be pseudonymized with the key the store was built with, or the erasure
/// would miss it and report success.
fn check_fingerprint(store: &Store, door: &Pseudonymizer) -> anyhow::Result<()> {
    let stored = store
        .snapshot()?
        .meta(rewind::engine::META_KEY_FINGERPRINT)?;
    match stored {
        Some(f) if f == door.fingerprint().as_bytes() => Ok(()),
        Some(_) => bail!(
            "this pseudonym key is not the one the store was built with, so the account would \
             not be found: pass the store's key (--key-file or REWIND_PSEUDONYM_KEY)"
        ),
        None => bail!(
            "the store records no pseudonym key fingerprint, so whose pseudonyms it holds \
             cannot be checked; it was not written by `rewind run` or `rewind replay`"
        ),
    }
}

/// Every served-feature log of the store directory, held for writing.
fn claim_served_logs(dir: &Path) -> anyhow::Result<Vec<LogFile>> {
    let mut logs = Vec::new();
    for path in slot_paths(dir) {
        match LogFile::open_slot(&path)? {
            Some(log) => logs.push(log),
            None => bail!(
                "served log {} is held by a running `rewind serve --log-served`: stop it, then \
                 erase again (nothing was erased)",
                path.display()
            ),
        }
    }
    Ok(logs)
}

/// Deletes the viewer's rows from every served-feature log, then scrubs each file that held
/// any. Returns the rows deleted.
fn erase_served(logs: Vec<LogFile>, viewer: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for mut log in logs {
        let n = log.erase("viewer", viewer)?;
        total += n;
        if n > 0 {
            log.scrub()?;
        }
        log.close();
    }
    Ok(total)
}

fn report(
    store: &Store,
    erased: &Erased,
    served: u64,
    commit_elapsed: std::time::Duration,
) -> anyhow::Result<()> {
    let snap = store.snapshot()?;
    if erased.erasures == 0 {
        outln!(
            "already erased: the store's suppression list holds this account at the same or a \
             later erasure time; nothing more to remove"
        )?;
    } else if erased.online_rows == 0 {
        outln!("the store held no rows of this account; the erasure is recorded")?;
    } else {
        outln!(
            "erased: 1 online row, {} history entries ({} blocks rewritten, {} removed) in a \
             commit of {commit_elapsed:.2?}",
            erased.history_entries,
            erased.blocks_rewritten,
            erased.blocks_removed
        )?;
    }
    outln!("served-log rows erased: {served}")?;
    if erased.online_rows > 0 {
        outln!(
            "store file rewritten without them: {} -> {} bytes in {:.2?}",
            erased.scrub.bytes_before,
            erased.scrub.bytes_after,
            erased.scrub.elapsed
        )?;
    }
    outln!(
        "suppression list: {} accounts, {} erasures applied",
        snap.erasures().map(|e| e.len())?,
        snap.erasures_applied()?
    )?;
    Ok(())
}
