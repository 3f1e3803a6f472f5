//! `rewind privacy report`: what an auditor asks of a store, answered from the store itself.
//!
//! Nothing here trusts the code that wrote the store: retention is checked by sweeping every
//! history block, and the byte scan reads every file in the store directory as raw bytes,
//! free pages included, for what must never be there (raw account ids, emails, IP
//! addresses). A finding is reported by kind and byte offset, never by its content: the
//! report must not itself disclose what it found.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use rewind_dataflows::window::RETENTION_MS;
use rewind_state::{ReadOnlyStore, Snapshot, StoreError};
use serde::Serialize;

/// Bytes read at a time by the scan; matches are found across chunk edges.
const CHUNK: usize = 1 << 20;
/// The longest match the scanners look for (an email: 64 + 1 + 255 bytes).
const OVERLAP: usize = 320;
/// The longest look-behind of a match: an email's local part.
const CONTEXT: usize = 64;
/// Offsets reported per file and kind; the counts are always complete.
const SAMPLES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The shape of a raw account id, for the byte scan: `prefix` then at least `digits` ASCII
/// digits, not part of a longer word (`u` and 7 digits is what `rewind gen` produces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawIdShape {
    pub prefix: String,
    pub digits: usize,
}

impl std::str::FromStr for RawIdShape {
    type Err = String;

    /// `u:7`: prefix `u`, at least 7 digits.
    fn from_str(s: &str) -> Result<RawIdShape, String> {
        let bad =
            || format!("{s:?} is not a raw id shape like u:7 (a prefix, then a count of digits)");
        let (prefix, digits) = s.rsplit_once(':').ok_or_else(bad)?;
        let digits: usize = digits.parse().map_err(|_| bad())?;
        if !(1..=64).contains(&digits)
            || prefix.len() > 64
            || !prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad());
        }
        Ok(RawIdShape {
            prefix: prefix.to_string(),
            digits,
        })
    }
}

/// What the report covers and how.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub store_dir: PathBuf,
    pub raw_ids: Vec<RawIdShape>,
    /// A Kafka cluster and the topics the store was built from: their own retention is where
    /// raw events outlive anything rewind purges.
    pub brokers: Option<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub store: String,
    /// Every tick strictly below it is final; `None` before the first commit.
    pub frontier_ms: Option<u64>,
    pub retention: Retention,
    pub erasures: Erasures,
    pub dead_letters: DeadLetters,
    pub scan: Vec<FileScan>,
    /// Raw data outside rewind: each topic's `retention.ms`, when a cluster was given.
    pub kafka: Option<Kafka>,
    /// Consent coverage as of the frontier: per purpose the store gates, the viewers whose
    /// consent in force (as the store records it) includes it; `None` without consent.
    pub consent: Option<Vec<(String, u64)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kafka {
    pub brokers: String,
    /// (topic, `retention.ms`; `-1` keeps records forever).
    pub topics: Vec<(String, i64)>,
    /// Why the topics could not be described, when they could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    /// The store's retention (`retention_ms` in meta), else the seed's limit.
    pub limit_ms: u64,
    /// `frontier - limit`: a row whose validity ended before it must be gone.
    pub cutoff_ms: Option<u64>,
    pub tables: Vec<TableAge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableAge {
    pub table: &'static str,
    pub rows: u64,
    /// The oldest time a row of the table holds (for history, the oldest tick).
    pub oldest_ms: Option<u64>,
    /// Rows that should have been purged: for history, changes whose validity ended before
    /// the cutoff (the latest change at or before the cutoff is still the value as of it).
    pub past_retention: u64,
}

/// The store's proof of the erasures it applied: counts and times only (its suppression list
/// holds keyed hashes, never a pseudonym).
#[derive(Debug, Clone, Serialize)]
pub struct Erasures {
    /// Erasures applied (a repeat of one already applied is not counted).
    pub applied: u64,
    /// Entries of the suppression list: the distinct viewers erased.
    pub viewers: u64,
    /// The latest applied.
    pub latest: Option<LatestErasure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatestErasure {
    /// The erasure's own time (the viewer's events before it are ignored for good).
    pub ts_ms: u64,
    /// The tick it took effect at.
    pub tick_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    pub total: u64,
    /// Reason with its numbers replaced by `N`, so that reasons group: count, most first.
    pub by_reason: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileScan {
    pub file: String,
    pub bytes: u64,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `raw id u:7`, `email` or `ipv4`.
    pub kind: String,
    pub count: u64,
    /// The first few byte offsets, to look at with a hex dump; never the bytes themselves.
    pub offsets: Vec<u64>,
}

impl Report {
    /// Whether anything in it calls for action: rows past retention or a finding in a scan.
    pub fn clean(&self) -> bool {
        self.retention.tables.iter().all(|t| t.past_retention == 0)
            && self.scan.iter().all(|f| f.findings.is_empty())
    }
}

pub fn report(config: &AuditConfig) -> Result<Report, AuditError> {
    let store = ReadOnlyStore::open(&config.store_dir)?;
    let snap = store.snapshot()?;
    let frontier_ms = snap.frontier_ms()?;
    let limit_ms = snap.retention_ms()?.unwrap_or(RETENTION_MS);
    let cutoff_ms = frontier_ms.map(|f| f.saturating_sub(limit_ms));
    let retention = Retention {
        limit_ms,
        cutoff_ms,
        tables: vec![
            history_age(&snap, cutoff_ms)?,
            dead_letter_age(&snap, cutoff_ms)?,
        ],
    };
    let erasures = Erasures {
        applied: snap.erasures_applied()?,
        viewers: snap.erasures()?.len() as u64,
        latest: snap
            .latest_erasure()?
            .map(|(ts_ms, tick_ms)| LatestErasure { ts_ms, tick_ms }),
    };
    let dead_letters = dead_letters(&snap)?;
    let consent = consent_coverage(&snap)?;
    drop(snap);
    let scan = scan_dir(&config.store_dir, &config.raw_ids)?;
    let kafka = config.brokers.as_ref().map(|(brokers, topics)| {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let (topics, error) = match rewind_connectors::topic_retention_ms(brokers, &names) {
            Ok(topics) => (topics, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Kafka {
            brokers: brokers.clone(),
            topics,
            error,
        }
    });
    Ok(Report {
        store: config.store_dir.display().to_string(),
        frontier_ms,
        retention,
        erasures,
        dead_letters,
        scan,
        kafka,
        consent,
    })
}

/// Per gated purpose, the viewers whose recorded consent includes it, from the online rows of
/// the consent feature (the consent in force as of the frontier).
fn consent_coverage(snap: &Snapshot) -> Result<Option<Vec<(String, u64)>>, AuditError> {
    use crate::purpose::{CONSENT_FEATURE, META_CONSENT, gated_purposes};
    let gated = gated_purposes(snap.meta(META_CONSENT)?.as_deref());
    if gated.is_empty() {
        return Ok(None);
    }
    let mut counts: Vec<(String, u64)> = gated.into_iter().map(|p| (p, 0)).collect();
    for (_, _, row) in snap.online_all()? {
        if row.feature != CONSENT_FEATURE {
            continue;
        }
        let consented: Vec<String> = serde_json::from_slice(&row.value_json).unwrap_or_default();
        for (purpose, count) in &mut counts {
            *count += u64::from(consented.contains(purpose));
        }
    }
    Ok(Some(counts))
}

/// One sweep of history in time order: a key's change at tick `t` ends the validity of the
/// key's previous change still in the store, which is past retention when `t` is before the
/// cutoff.
fn history_age(snap: &Snapshot, cutoff_ms: Option<u64>) -> Result<TableAge, AuditError> {
    let mut last_seen: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut age = TableAge {
        table: "history",
        rows: 0,
        oldest_ms: None,
        past_retention: 0,
    };
    let mut sweep = snap.sweep(0, u64::MAX)?;
    while let Some(block) = sweep.next_block()? {
        age.oldest_ms.get_or_insert(block.tick_ms);
        for entry in block.entries() {
            let entry = entry?;
            age.rows += 1;
            let ended_before_cutoff = cutoff_ms.is_some_and(|c| block.tick_ms < c);
            match last_seen.get_mut(entry.key) {
                Some(previous) => {
                    age.past_retention += u64::from(ended_before_cutoff);
                    *previous = block.tick_ms;
                }
                None => {
                    last_seen.insert(entry.key.to_vec(), block.tick_ms);
                }
            }
        }
    }
    Ok(age)
}

/// Dead letters carry the event time they belong to; one older than the cutoff must be gone.
fn dead_letter_age(snap: &Snapshot, cutoff_ms: Option<u64>) -> Result<TableAge, AuditError> {
    let times = snap.dead_letter_times()?;
    Ok(TableAge {
        table: "dead_letters",
        rows: times.len() as u64,
        oldest_ms: times.iter().map(|t| t.0).min(),
        past_retention: times
            .iter()
            .filter(|t| cutoff_ms.is_some_and(|c| t.0 < c))
            .count() as u64,
    })
}

fn dead_letters(snap: &Snapshot) -> Result<DeadLetters, AuditError> {
    let letters = snap.dead_letters()?;
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for letter in &letters {
        *by_reason.entry(reason_class(&letter.reason)).or_default() += 1;
    }
    let mut by_reason: Vec<(String, u64)> = by_reason.into_iter().collect();
    by_reason.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(DeadLetters {
        total: letters.len() as u64,
        by_reason,
    })
}

/// `payload of 70000 bytes exceeds the 65536-byte limit` → `payload of N bytes exceeds the
/// N-byte limit`: reasons that differ only in their numbers are one class.
fn reason_class(reason: &str) -> String {
    let mut class = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                class.push('N');
            }
            in_number = true;
        } else {
            class.push(c);
            in_number = false;
        }
    }
    class
}

/// Every regular file in the store directory, in name order. The pseudonym key is random
/// bytes by design, and is scanned like the rest.
fn scan_dir(dir: &Path, raw_ids: &[RawIdShape]) -> Result<Vec<FileScan>, AuditError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            let (bytes, findings) = scan(file, raw_ids).map_err(io(&path))?;
            Ok(FileScan {
                file: path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                bytes,
                findings,
            })
        })
        .collect()
}

/// What a scanner looks for in a byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    RawId(usize),
    Email,
    Ipv4,
}

/// Scans a stream in chunks. Each chunk is scanned with the end of the previous one before
/// it: `OVERLAP` bytes whose matches were not counted yet (a match may run past a chunk's
/// end), and `CONTEXT` bytes before those that only serve as the look-behind of a match.
fn scan(mut input: impl Read, raw_ids: &[RawIdShape]) -> std::io::Result<(u64, Vec<Finding>)> {
    let mut found: BTreeMap<Kind, (u64, Vec<u64>)> = BTreeMap::new();
    let mut buf = vec![0u8; CONTEXT + OVERLAP + CHUNK];
    // `buf[..carried]` is the end of the previous chunk; `buf[0]` is at offset `base`.
    let (mut carried, mut base) = (0, 0u64);
    // Matches starting before this offset were counted already.
    let mut counted_from = 0u64;
    let mut total = 0u64;
    loop {
        let read = input.read(&mut buf[carried..])?;
        total += read as u64;
        let end = carried + read;
        let last = read == 0;
        let counted_up_to = if last {
            end
        } else {
            end.saturating_sub(OVERLAP)
        };
        find_matches(&buf[..end], raw_ids, &mut |kind, at| {
            let offset = base + at as u64;
            if offset >= counted_from && at < counted_up_to {
                let entry = found.entry(kind).or_default();
                entry.0 += 1;
                if entry.1.len() < SAMPLES {
                    entry.1.push(offset);
                }
            }
        });
        if last {
            break;
        }
        counted_from = counted_from.max(base + counted_up_to as u64);
        let keep_from = counted_up_to.saturating_sub(CONTEXT);
        buf.copy_within(keep_from..end, 0);
        base += keep_from as u64;
        carried = end - keep_from;
    }
    let findings = found
        .into_iter()
        .map(|(kind, (count, offsets))| Finding {
            kind: match kind {
                Kind::RawId(i) => format!("raw id {}:{}", raw_ids[i].prefix, raw_ids[i].digits),
                Kind::Email => "email".into(),
                Kind::Ipv4 => "ipv4".into(),
            },
            count,
            offsets,
        })
        .collect();
    Ok((total, findings))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Calls `note(kind, start)` for every match in `bytes`.
fn find_matches(bytes: &[u8], raw_ids: &[RawIdShape], note: &mut impl FnMut(Kind, usize)) {
    for (i, shape) in raw_ids.iter().enumerate() {
        let prefix = shape.prefix.as_bytes();
        let mut from = 0;
        while let Some(at) = find(&bytes[from..], prefix).map(|p| p + from) {
            from = at + 1;
            if at > 0 && is_word(bytes[at - 1]) {
                continue;
            }
            let digits = bytes[at + prefix.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let after = bytes.get(at + prefix.len() + digits).copied();
            if digits >= shape.digits && !after.is_some_and(is_word) {
                note(Kind::RawId(i), at);
            }
        }
    }
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'@') {
        if let Some(start) = email_at(bytes, at) {
            note(Kind::Email, start);
        }
    }
    let mut at = 0;
    while at < bytes.len() {
        let starts_number = at == 0 || !(bytes[at - 1].is_ascii_digit() || bytes[at - 1] == b'.');
        if bytes[at].is_ascii_digit()
            && starts_number
            && let Some(len) = ipv4_len(&bytes[at..])
        {
            note(Kind::Ipv4, at);
            at += len;
            continue;
        }
        at += 1;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The start of the email address whose `@` is at `at`: a local part of at least one of
/// `A-Za-z0-9._%+-`, and a domain of labels with at least one dot and a final label of two or
/// more letters.
fn email_at(bytes: &[u8], at: usize) -> Option<usize> {
    let local = |b: u8| b.is_ascii_alphanumeric() || b".-_%+".contains(&b);
    let mut start = at;
    while start > 0 && local(bytes[start - 1]) && at - start < 64 {
        start -= 1;
    }
    if start == at {
        return None;
    }
    let domain: &[u8] = &bytes[at + 1..];
    let len = domain
        .iter()
        .take(255)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'.')
        .count();
    let domain = domain[..len].strip_suffix(b".").unwrap_or(&domain[..len]);
    let last_dot = domain.iter().rposition(|b| *b == b'.')?;
    let tld = &domain[last_dot + 1..];
    let first_label_ok = last_dot > 0 && domain[0] != b'.';
    (first_label_ok && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(start)
}

/// The length of a dotted-quad IPv4 address at the start of `bytes` (each part 0-255, at most
/// three digits, not followed by another digit or dot-digit).
fn ipv4_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    for part in 0..4 {
        if part > 0 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        let value: u32 = std::str::from_utf8(&bytes[at..at + digits])
            .ok()?
            .parse()
            .ok()?;
        if value > 255 {
            return None;
        }
        at += digits;
    }
    let next_is_more =
        bytes.get(at) == Some(&b'.') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
    (!next_is_more).then_some(at)
}

impl Report {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let day = 86_400_000.0;
        let mut out = format!("privacy report of {}\n", self.store);
        let time = |ms: Option<u64>| ms.map_or("-".to_string(), crate::utc::format_ms);
        out.push_str(&format!("frontier: {}\n\n", time(self.frontier_ms)));
        out.push_str(&format!(
            "retention: {:.0} days, cutoff {}\n",
            self.retention.limit_ms as f64 / day,
            time(self.retention.cutoff_ms)
        ));
        for t in &self.retention.tables {
            out.push_str(&format!(
                "  {}: {} rows, oldest {}, {} past retention\n",
                t.table,
                t.rows,
                time(t.oldest_ms),
                t.past_retention
            ));
        }
        out.push_str(&format!(
            "\nerasures applied: {} ({} viewers in the suppression list)",
            self.erasures.applied, self.erasures.viewers
        ));
        match &self.erasures.latest {
            Some(e) => out.push_str(&format!(
                ", latest at {} (erasure time {})\n",
                time(Some(e.tick_ms)),
                time(Some(e.ts_ms))
            )),
            None => out.push('\n'),
        }
        if let Some(consent) = &self.consent {
            out.push_str("\nconsent coverage as of the frontier (viewers consenting):\n");
            for (purpose, viewers) in consent {
                out.push_str(&format!("  {purpose}: {viewers}\n"));
            }
        }
        out.push_str(&format!("\ndead letters: {}\n", self.dead_letters.total));
        for (reason, count) in &self.dead_letters.by_reason {
            out.push_str(&format!("  {count} × {reason}\n"));
        }
        out.push_str("\nbyte scan (every file in the store directory, free pages included):\n");
        for f in &self.scan {
            if f.findings.is_empty() {
                out.push_str(&format!(
                    "  {} ({} bytes): nothing found\n",
                    f.file, f.bytes
                ));
            }
            for finding in &f.findings {
                out.push_str(&format!(
                    "  {} ({} bytes): {} × {}, first at byte offsets {:?}\n",
                    f.file, f.bytes, finding.count, finding.kind, finding.offsets
                ));
            }
        }
        if let Some(kafka) = &self.kafka {
            out.push_str(&format!(
                "\nraw events outside rewind (Kafka topics on {}; their retention is the \
                 operator's):\n",
                kafka.brokers
            ));
            for (topic, ms) in &kafka.topics {
                let kept = match *ms {
                    ms if ms < 0 => "forever".to_string(),
                    ms => format!("{:.1} days", ms as f64 / day),
                };
                let over = *ms < 0 || *ms as u64 > self.retention.limit_ms;
                out.push_str(&format!(
                    "  {topic}: retention.ms {ms} ({kept}){}\n",
                    if over {
                        ", longer than the store's retention"
                    } else {
                        ""
                    }
                ));
            }
            if let Some(error) = &kafka.error {
                out.push_str(&format!("  could not describe the topics: {error}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> Vec<RawIdShape> {
        vec!["u:7".parse().unwrap()]
    }

    fn kinds(bytes: &[u8]) -> Vec<(Kind, usize)> {
        let mut out = Vec::new();
        find_matches(bytes, &shapes(), &mut |k, at| out.push((k, at)));
        out.sort();
        out
    }

    #[test]
    fn finds_each_kind_and_not_its_lookalikes() {
        assert_eq!(kinds(b"x u0000123 y"), vec![(Kind::RawId(0), 2)]);
        assert_eq!(kinds(b"\x00u1234567\xff"), vec![(Kind::RawId(0), 1)]);
        // Too few digits, inside a word, or followed by a letter: not an id.
        assert!(kinds(b"u123456 mu1234567 u1234567x").is_empty());
        assert_eq!(
            kinds(b"to: a.b+c@mail.example.com."),
            vec![(Kind::Email, 4)]
        );
        assert!(kinds(b"@ x@y a@b.c a@.com a@b.12").is_empty());
        assert_eq!(kinds(b"ip=10.0.255.7;"), vec![(Kind::Ipv4, 3)]);
        assert!(kinds(b"10.0.256.7 1.2.3 1.2.3.4.5 1234.1.1.1").is_empty());
    }

    #[test]
    fn the_generator_s_email_counts_as_an_email_and_its_id_as_an_id() {
        let found = kinds(b"\"u0000042@example.com\"");
        assert_eq!(found, vec![(Kind::RawId(0), 1), (Kind::Email, 1)]);
    }

    #[test]
    fn matches_across_chunk_edges_are_counted_once() {
        // The first read fills the whole buffer; matches starting before `edge` are counted
        // with the first chunk, the rest with later ones, whose edges are a CHUNK apart.
        let edge = CHUNK + CONTEXT;
        let mut bytes = vec![0u8; 3 * CHUNK];
        let ids = [5, edge - 30, edge + 20, edge + CHUNK - 2, 3 * CHUNK - 8];
        for &p in &ids {
            bytes[p..p + 8].copy_from_slice(b"u1234567");
        }
        // An email that starts before the first edge and has its `@` after it.
        let email = edge - 5;
        bytes[email..email + 15].copy_from_slice(b"someone@mail.tv");
        let (total, findings) = scan(&bytes[..], &shapes()).unwrap();
        assert_eq!(total, bytes.len() as u64);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[0].count, ids.len() as u64);
        assert_eq!(
            findings[0].offsets,
            ids[..SAMPLES].iter().map(|&p| p as u64).collect::<Vec<_>>()
        );
        assert_eq!(findings[1].kind, "email");
        assert_eq!(
            (findings[1].count, findings[1].offsets.clone()),
            (1, vec![email as u64])
        );
        // Read a few bytes at a time, the same.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = out.len().min(self.0.len()).min(7_777);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let (_, trickled) = scan(Trickle(&bytes), &shapes()).unwrap();
        assert_eq!(format!("{trickled:?}"), format!("{findings:?}"));
    }

    #[test]
    fn reasons_group_by_their_words() {
        assert_eq!(
            reason_class("payload of 70000 bytes exceeds the 65536-byte limit"),
            "payload of N bytes exceeds the N-byte limit"
        );
        assert_eq!(
            reason_class("missing required field `ts`"),
            "missing required field `ts`"
        );
    }

    #[test]
    fn raw_id_shapes_parse() {
        assert_eq!(
            "user-:12".parse::<RawIdShape>().unwrap(),
            RawIdShape {
                prefix: "user-".into(),
                digits: 12
            }
        );
        for bad in ["u", "u:0", "u:x", "u:65", " :3"] {
            assert!(bad.parse::<RawIdShape>().is_err(), "{bad}");
        }
    }
}
