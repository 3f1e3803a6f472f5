//! `rewind erase`: a viewer's right to erasure, for a store built from a file (a live run takes
//! erasures from its `erasure` topic instead).

use super::outln;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rewind::decode::MAX_ID_BYTES;
use rewind::privacy::{KeySource, Pseudonymizer, STORE_KEY_FILE};
use rewind::served::FOLLOW_EVERY;
use rewind::served::file::{LogFile, LogReader, slot_paths};
use rewind_state::{Commit, Erased, Erasure, Store, StoreError};
use std::time::{Duration, Instant};

/// Erase viewers from a store: their current values, their whole history and their
/// served-log rows are deleted, and the files are rewritten so that no byte of them remains.
/// The store keeps only a keyed hash of each viewer and the erasure's time, as proof that it
/// happened.
///
/// The account ids are pseudonymized with the store's key, as the door does; they are never
/// printed or stored. The store must not be written meanwhile: stop `rewind run` first (a live
/// run erases through its erasure topic). A `rewind serve --log-served` may keep serving: it
/// follows the store and erases its own log, and this waits until it has. Run it again for the
/// same account: nothing more is removed.
#[derive(Debug, Args)]
pub struct EraseArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    /// The raw account id, as producers send it in `user_id`. It is visible to every user of
    /// the machine while the command runs (`ps`, /proc/PID/cmdline) and may stay in shell
    /// history: prefer --user-id-file.
    // An id may start with '-': taken as the value, never echoed back as an unknown option.
    #[arg(
        long,
        allow_hyphen_values = true,
        required_unless_present = "user_id_file",
        conflicts_with = "user_id_file"
    )]
    user_id: Option<String>,
    /// A file of raw account ids, one a line (`-`: standard input), each erased, all in one
    /// commit. Every line is checked before anything is erased; an error names the line by
    /// its number, never by its content.
    #[arg(long, value_name = "PATH")]
    user_id_file: Option<PathBuf>,
    /// The erasure's time (ms since the epoch): the account's events before it are the ones
    /// erased. Default: the store's frontier (everything it holds).
    #[arg(long)]
    ts: Option<u64>,
    /// The pseudonym key file (else REWIND_PSEUDONYM_KEY, else the store's own key file).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Seconds to wait for running `rewind serve --log-served` processes to erase the rows of
    /// their own served logs (they follow the store, and rewrite their files).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    server_wait: u64,
}

/// Event times outside these years are implausible, as at the door (`docs/events.md`).
const PLAUSIBLE_MS: std::ops::Range<u64> = 946_684_800_000..4_102_444_800_000;

pub fn run(args: EraseArgs) -> anyhow::Result<()> {
    let user_ids = match (&args.user_id, &args.user_id_file) {
        (Some(id), _) => {
            check_user_id(id).map_err(|why| anyhow::anyhow!("--user-id {why}"))?;
            vec![id.clone()]
        }
        (None, Some(path)) => read_user_ids(path)?,
        (None, None) => bail!("name the account: --user-id-file PATH (or --user-id ID)"),
    };
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
    // Claimed before anything is erased; a log a server holds, the server erases itself.
    let (logs, held) = claim_served_logs(&args.store)?;
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
    let mut ids: Vec<_> = user_ids.iter().map(|id| door.viewer_id(id)).collect();
    // One erasure per account, however often the file names it.
    ids.sort_unstable();
    ids.dedup();
    let erasures = ids
        .iter()
        .map(|viewer| Erasure {
            entity_kind: "viewer",
            entity_id: viewer.to_string().into(),
            ts_ms,
            tick_ms: frontier_ms,
            token: door.erasure_token(viewer),
        })
        .collect();
    let viewers: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let commit = Commit {
        frontier_ms,
        erasures,
        ..Commit::default()
    };
    let started = std::time::Instant::now();
    let erased = store.commit(&commit)?.erased;
    let commit_elapsed = started.elapsed().saturating_sub(erased.scrub.elapsed);
    let served = erase_served(logs, &viewers)?;
    report(&store, &erased, served, commit_elapsed)?;
    if !held.is_empty() {
        let wait = Duration::from_secs(args.server_wait);
        // Each account as of the tick its erasure holds at: a repeat's is the first one's, and
        // rows served since are the server's to keep.
        let snapshot = store.snapshot()?;
        let mut erased = Vec::new();
        for (viewer, id) in viewers.iter().zip(&ids) {
            let record = snapshot.erasure(door.erasure_token(id))?;
            erased.extend(record.map(|r| (viewer.as_str(), r.tick_ms)));
        }
        drop(snapshot);
        wait_for_servers(&args.store, &held, &erased, wait)?;
    }
    let accounts = viewers.len();
    outln!("{accounts} account(s), at tick {frontier_ms} (erasure time {ts_ms})")?;
    Ok(())
}

/// The ids of `path` (`-`: standard input), one a line, each checked as the door checks
/// `user_id`. A final newline ends the last line; a `\r` before a newline is not part of it.
fn read_user_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let name = if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading account ids from standard input")?;
        "standard input".to_string()
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading account ids from {}", path.display()))?;
        path.display().to_string()
    };
    let mut ids = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let last = n + 1 == bytes.split(|b| *b == b'\n').count();
        if last && line.is_empty() {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let id = std::str::from_utf8(line)
            .map_err(|_| anyhow::anyhow!("line {} of {name} is not UTF-8 text", n + 1))?;
        check_user_id(id).map_err(|why| anyhow::anyhow!("line {} of {name} {why}", n + 1))?;
        ids.push(id.to_string());
    }
    if ids.is_empty() {
        bail!("{name} holds no account id: give one a line");
    }
    Ok(ids)
}

/// The id is checked as the door checks `user_id`; the reason never shows it.
fn check_user_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("is empty or blank: give the account id producers send as `user_id`".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "is {} bytes, and no account id is over {MAX_ID_BYTES} (the door refuses such \
             events, so no store holds one)",
            id.len()
        ));
    }
    if id.trim() != id || id.chars().any(char::is_control) {
        return Err(
            "has spaces at an end or control characters, which no account id has: check the \
             file's format (one id a line)"
                .into(),
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

/// Every served-feature log of the store directory no process holds, held for writing; and
/// the paths of those a running server holds.
fn claim_served_logs(dir: &Path) -> anyhow::Result<(Vec<LogFile>, Vec<PathBuf>)> {
    let (mut logs, mut held) = (Vec::new(), Vec::new());
    for path in slot_paths(dir) {
        match LogFile::open_slot(&path)? {
            Some(log) => logs.push(log),
            None => held.push(path),
        }
    }
    Ok((logs, held))
}

/// Waits until no served log holds a row of the `erased` viewers as of their erasure's tick
/// or earlier: the running servers that hold `held` follow the store, and erase their own.
fn wait_for_servers(
    dir: &Path,
    held: &[PathBuf],
    erased: &[(&str, u64)],
    wait: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let reader = LogReader::open(dir)?;
        let mut left = 0;
        for (viewer, tick_ms) in erased {
            left += reader.count_as_of("viewer", viewer, *tick_ms)?;
        }
        drop(reader);
        if left == 0 {
            outln!(
                "served-log rows in {} log(s) of running servers: erased by them",
                held.len()
            )?;
            return Ok(());
        }
        if started.elapsed() > wait {
            let paths: Vec<String> = held.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "the store's erasure is done, but {left} row(s) of the account(s) are still in \
                 the served log(s) {} after {wait:?}: the server holding them has not erased \
                 them (it may not follow the store's erasures, or lack the store's key). Stop \
                 it, then run `rewind erase` again to erase its log",
                paths.join(", ")
            );
        }
        std::thread::sleep(FOLLOW_EVERY / 2);
    }
}

/// Deletes the viewers' rows from every served-feature log, then scrubs each file that held
/// any. Returns the rows deleted.
fn erase_served(logs: Vec<LogFile>, viewers: &[String]) -> anyhow::Result<u64> {
    let mut total = 0;
    for mut log in logs {
        let mut n = 0;
        for viewer in viewers {
            n += log.erase("viewer", viewer)?;
        }
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
        let rows = match erased.online_rows {
            1 => "1 online row".to_string(),
            n => format!("{n} online rows"),
        };
        outln!(
            "erased: {rows}, {} history entries ({} blocks rewritten, {} removed) in a \
             commit of {commit_elapsed:.2?}",
            erased.history_entries,
            erased.blocks_rewritten,
            erased.blocks_removed
        )?;
    }
    if erased.erasures > 0 && erased.repeats > 0 {
        outln!(
            "{} account(s) already erased: nothing more to remove",
            erased.repeats
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
