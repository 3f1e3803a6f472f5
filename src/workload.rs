//! The seeded workload generator: viewers browsing and watching a catalog of titles, as the
//! JSON records producers send (personal fields included, which the door must drop).
//!
//! Each viewer is always online, alternating between browsing (about four impressions, clicks
//! and searches a minute) and watching a title (a heartbeat every 10 s, the odd pause or seek,
//! then a complete or an abandon). Titles are picked by Zipf popularity. Events come out in
//! simulated-time order, with a small fraction stamped up to `disorder_ms` early (reordering
//! within the lateness) and, optionally, a fraction stamped `late_ms` early (beyond it).
//! The same seed gives the same records, byte for byte.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How a workload is shaped.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub viewers: u32,
    pub titles: u32,
    pub seed: u64,
    /// Simulated time of the first event, ms since the epoch.
    pub start_ms: u64,
    /// Fraction of events stamped up to `disorder_ms` before their place in the stream.
    pub disorder: f64,
    pub disorder_ms: u64,
    /// Fraction of events stamped `late_ms` before their place (beyond the lateness).
    pub late: f64,
    pub late_ms: u64,
}

impl Default for GenConfig {
    fn default() -> GenConfig {
        GenConfig {
            viewers: 1000,
            titles: 200,
            seed: 1,
            // 2026-01-01T00:00:00Z: a fixed start keeps generated files reproducible.
            start_ms: 1_767_225_600_000,
            disorder: 0.05,
            // Inside the default 5 s lateness, so a default workload has no late events.
            disorder_ms: 3000,
            late: 0.0,
            late_ms: 30_000,
        }
    }
}

/// One generated record, ready for a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub json: String,
    /// The event's `ts`.
    pub ts_ms: u64,
    /// When the event is due in simulated time: `ts_ms`, or later for an event stamped early.
    pub due_ms: u64,
}

impl Record {
    /// Moves the event to `ts_ms`, rewriting its `ts` field; the rest stays byte for byte.
    /// The benchmark uses it to put simulated events on the wall clock.
    pub fn restamp(&mut self, ts_ms: u64) {
        let Some(at) = self.json.find(r#","ts":"#) else {
            return;
        };
        let start = at + r#","ts":"#.len();
        let digits = self.json[start..].bytes().take_while(u8::is_ascii_digit);
        let end = start + digits.count();
        self.json.replace_range(start..end, &ts_ms.to_string());
        self.ts_ms = ts_ms;
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Browsing,
    Watching {
        title: u32,
        position_s: u64,
        paused: bool,
    },
}

const GENRES: &[&str] = &[
    "action",
    "animation",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "family",
    "fantasy",
    "horror",
    "romance",
    "scifi",
    "thriller",
];
const ROWS: &[&str] = &[
    "home",
    "trending",
    "continue_watching",
    "because_you_watched",
    "new",
];
const WORDS: &[&str] = &[
    "space",
    "love",
    "detective",
    "dragon",
    "island",
    "war",
    "cooking",
];

pub struct Generator {
    config: GenConfig,
    rng: StdRng,
    due: Due,
    states: Vec<State>,
    popularity: Vec<f64>,
    durations_s: Vec<u64>,
    seq: u64,
}

impl Generator {
    pub fn new(config: GenConfig) -> Generator {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let titles = config.titles.max(1);
        let popularity = zipf_cdf(titles as usize, 1.0);
        let durations_s = (0..titles).map(|t| duration_s(t, &mut rng)).collect();
        let mut due = Due::new(config.start_ms);
        let mut states = Vec::with_capacity(config.viewers as usize);
        for viewer in 0..config.viewers {
            // Spread first actions over 10 s so the load is smooth from the start.
            due.push(
                config.start_ms.saturating_add(rng.random_range(0..10_000)),
                viewer,
            );
            states.push(State::Browsing);
        }
        let config = GenConfig { titles, ..config };
        Generator {
            config,
            rng,
            due,
            states,
            popularity,
            durations_s,
            seq: 0,
        }
    }

    /// The titles topic: one record per title, keyed by `title_id`.
    pub fn title_records(&self) -> Vec<Record> {
        let mut rng = StdRng::seed_from_u64(self.config.seed ^ 0x7469_746c_6573);
        (0..self.config.titles)
            .map(|t| title_record(t, self.durations_s[t as usize], &mut rng))
            .collect()
    }

    fn pick_title(&mut self) -> u32 {
        let u: f64 = self.rng.random();
        self.popularity
            .partition_point(|&c| c < u)
            .min(self.popularity.len() - 1) as u32
    }

    /// Advances one viewer at `now`; returns its record and when it acts next.
    fn step(&mut self, viewer: u32, now: u64) -> (String, u64) {
        let state = self.states[viewer as usize];
        let (body, next_state, wait_ms) = match state {
            State::Browsing => self.browse(),
            State::Watching {
                title,
                position_s,
                paused,
            } => self.watch(title, position_s, paused),
        };
        self.states[viewer as usize] = next_state;
        // Saturates: a start near the end of time must not wrap events back to 1970.
        (body, now.saturating_add(wait_ms))
    }

    fn browse(&mut self) -> (String, State, u64) {
        // About four browsing events a minute.
        let wait = 5_000 + self.rng.random_range(0..20_000);
        let title = self.pick_title();
        let roll: f64 = self.rng.random();
        if roll < 0.18 {
            let body = format!(r#""type":"play_start","title_id":"{}""#, title_id(title));
            let state = State::Watching {
                title,
                position_s: 0,
                paused: false,
            };
            return (body, state, 10_000);
        }
        let body = if roll < 0.78 {
            let row = ROWS[self.rng.random_range(0..ROWS.len())];
            let rank = self.rng.random_range(1..=20);
            format!(
                r#""type":"impression","title_id":"{}","row":"{row}","rank":{rank}"#,
                title_id(title)
            )
        } else if roll < 0.93 {
            format!(
                r#""type":"click","title_id":"{}","row":"home""#,
                title_id(title)
            )
        } else {
            let word = WORDS[self.rng.random_range(0..WORDS.len())];
            format!(
                r#""type":"search","query":"{word}","title_id":"{}""#,
                title_id(title)
            )
        };
        (body, State::Browsing, wait)
    }

    fn watch(&mut self, title: u32, position_s: u64, paused: bool) -> (String, State, u64) {
        let id = title_id(title);
        let roll: f64 = self.rng.random();
        if paused {
            let body = format!(r#""type":"resume","title_id":"{id}","position_s":{position_s}"#);
            return (
                body,
                State::Watching {
                    title,
                    position_s,
                    paused: false,
                },
                10_000,
            );
        }
        if position_s >= self.durations_s[title as usize] {
            let body = format!(r#""type":"complete","title_id":"{id}","position_s":{position_s}"#);
            return (body, State::Browsing, 5_000);
        }
        if roll < 0.01 {
            // Abandon: a last pause, then back to browsing.
            let body = format!(r#""type":"pause","title_id":"{id}","position_s":{position_s}"#);
            return (body, State::Browsing, 5_000);
        }
        if roll < 0.03 {
            let body = format!(r#""type":"pause","title_id":"{id}","position_s":{position_s}"#);
            let wait = 5_000 + self.rng.random_range(0..30_000);
            return (
                body,
                State::Watching {
                    title,
                    position_s,
                    paused: true,
                },
                wait,
            );
        }
        if roll < 0.05 {
            let to = position_s + self.rng.random_range(30..600);
            let body =
                format!(r#""type":"seek","title_id":"{id}","position_s":{position_s},"to_s":{to}"#);
            return (
                body,
                State::Watching {
                    title,
                    position_s: to,
                    paused: false,
                },
                1_000,
            );
        }
        let body = format!(
            r#""type":"heartbeat","title_id":"{id}","position_s":{position_s},"interval_s":10"#
        );
        (
            body,
            State::Watching {
                title,
                position_s: position_s + 10,
                paused: false,
            },
            10_000,
        )
    }

    fn stamp(&mut self, now: u64) -> u64 {
        let roll: f64 = self.rng.random();
        if roll < self.config.late {
            now.saturating_sub(self.config.late_ms)
        } else if roll < self.config.late + self.config.disorder {
            now.saturating_sub(self.rng.random_range(0..=self.config.disorder_ms))
        } else {
            now
        }
    }
}

/// The ms span the ring of [`Due`] covers: most viewers act again within a minute.
const SLOTS: u64 = 1 << 16;

/// Viewers by the ms they act next, popped in (time, viewer) order, as a binary heap of every
/// viewer would pop them, without the heap's cost: with a million viewers each pop walked
/// twenty levels of a heap far larger than the caches, and that was most of the generator's
/// time at peak rates. Times pushed are never before the last time popped.
struct Due {
    /// The time of the viewers in `current`; no viewer is due before it.
    now: u64,
    current: BinaryHeap<Reverse<u32>>,
    /// Slot `t % SLOTS` holds the viewers due at `t`, for `now < t < now + SLOTS`.
    ring: Vec<Vec<Reverse<u32>>>,
    in_ring: usize,
    /// Viewers due at `now + SLOTS` or later, as of when they were pushed.
    far: BTreeMap<u64, Vec<Reverse<u32>>>,
}

impl Due {
    fn new(start: u64) -> Due {
        Due {
            now: start,
            current: BinaryHeap::new(),
            ring: vec![Vec::new(); SLOTS as usize],
            in_ring: 0,
            far: BTreeMap::new(),
        }
    }

    fn push(&mut self, at: u64, viewer: u32) {
        let at = at.max(self.now);
        if at == self.now {
            self.current.push(Reverse(viewer));
        } else if at - self.now < SLOTS {
            self.ring[(at % SLOTS) as usize].push(Reverse(viewer));
            self.in_ring += 1;
        } else {
            self.far.entry(at).or_default().push(Reverse(viewer));
        }
    }

    fn pop(&mut self) -> Option<(u64, u32)> {
        loop {
            if let Some(Reverse(viewer)) = self.current.pop() {
                return Some((self.now, viewer));
            }
            // Nothing due within the ring: jump straight to the next far time.
            self.now = match (self.in_ring, self.far.first_key_value()) {
                (0, None) => return None,
                (0, Some((&at, _))) => at,
                _ => self.now + 1,
            };
            let mut due = std::mem::take(&mut self.ring[(self.now % SLOTS) as usize]);
            self.in_ring -= due.len();
            if self
                .far
                .first_key_value()
                .is_some_and(|(&at, _)| at == self.now)
            {
                due.extend(self.far.pop_first().map(|f| f.1).unwrap_or_default());
            }
            self.current = BinaryHeap::from(due);
        }
    }
}

impl Iterator for Generator {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let (now, viewer) = self.due.pop()?;
        let (body, next) = self.step(viewer, now);
        self.due.push(next, viewer);
        let ts_ms = self.stamp(now);
        self.seq += 1;
        let key = format!("u{viewer:07}");
        let mut json = String::with_capacity(256);
        let _ = write!(
            json,
            r#"{{"event_id":"e{:x}-{}","user_id":"{key}","ts":{ts_ms},{body},"email":"{key}@example.com","ip":"10.{}.{}.{}","device_id":"d-{:08x}"}}"#,
            self.config.seed,
            self.seq,
            (viewer >> 16) & 0xff,
            (viewer >> 8) & 0xff,
            viewer & 0xff,
            viewer.wrapping_mul(2_654_435_761),
        );
        Some(Record {
            key,
            json,
            ts_ms,
            due_ms: now,
        })
    }
}

pub fn title_id(title: u32) -> String {
    format!("tt{title:06}")
}

fn duration_s(title: u32, rng: &mut StdRng) -> u64 {
    if title.is_multiple_of(3) {
        rng.random_range(5_400..7_800)
    } else {
        rng.random_range(1_200..3_000)
    }
}

fn title_record(title: u32, duration_s: u64, rng: &mut StdRng) -> Record {
    let count = rng.random_range(1..=3);
    let mut genres: Vec<&str> = (0..count)
        .map(|_| GENRES[rng.random_range(0..GENRES.len())])
        .collect();
    genres.sort();
    genres.dedup();
    let genres = genres
        .iter()
        .map(|g| format!("\"{g}\""))
        .collect::<Vec<_>>()
        .join(",");
    let id = title_id(title);
    let kind = if title.is_multiple_of(3) {
        "\"kind\":\"movie\"".to_string()
    } else {
        format!("\"kind\":\"episode\",\"series_id\":\"s{:05}\"", title / 10)
    };
    let rating = ["G", "PG", "PG-13", "R"][rng.random_range(0..4)];
    let json = format!(
        r#"{{"title_id":"{id}","genres":[{genres}],"rating":"{rating}","duration_s":{duration_s},{kind}}}"#
    );
    Record {
        key: id,
        json,
        ts_ms: 0,
        due_ms: 0,
    }
}

/// Cumulative Zipf(s) probabilities over `n` ranks.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The ring pops what a heap of every viewer pops, in the same order: a seed must give
        /// the same records whatever the queue. Each pop pushes the viewer back after a wait,
        /// from none (the same ms) to past the ring's span.
        #[test]
        fn due_pops_in_the_order_of_a_heap(
            starts in proptest::collection::vec(0u64..20_000, 1..60),
            waits in proptest::collection::vec(
                prop_oneof![Just(0u64), 0u64..50, 0u64..3 * SLOTS],
                1..400,
            ),
        ) {
            let mut due = Due::new(1_000);
            let mut heap = BinaryHeap::new();
            for (viewer, start) in starts.iter().enumerate() {
                due.push(1_000 + start, viewer as u32);
                heap.push(Reverse((1_000 + start, viewer as u32)));
            }
            for wait in waits {
                let Reverse(expected) = heap.pop().unwrap();
                prop_assert_eq!(due.pop(), Some(expected));
                due.push(expected.0 + wait, expected.1);
                heap.push(Reverse((expected.0 + wait, expected.1)));
            }
            while let Some(Reverse(expected)) = heap.pop() {
                prop_assert_eq!(due.pop(), Some(expected));
            }
            prop_assert_eq!(due.pop(), None);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let a: Vec<Record> = Generator::new(GenConfig::default()).take(500).collect();
        let b: Vec<Record> = Generator::new(GenConfig::default()).take(500).collect();
        assert_eq!(a, b);
        let c: Vec<Record> = Generator::new(GenConfig {
            seed: 2,
            ..GenConfig::default()
        })
        .take(500)
        .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn records_are_valid_events_with_pii_and_bounded_disorder() {
        let config = GenConfig {
            viewers: 50,
            ..GenConfig::default()
        };
        let door = crate::privacy::Pseudonymizer::new(b"generator test key");
        let mut newest = 0;
        let mut kinds = std::collections::BTreeSet::new();
        for record in Generator::new(config.clone()).take(100_000) {
            let event = crate::decode::decode_event(Some(record.json.as_bytes()), &door).unwrap();
            kinds.insert(event.kind.type_name());
            assert!(record.json.contains("\"email\""));
            assert!(
                event.ts_ms + config.disorder_ms >= newest,
                "disorder beyond the bound"
            );
            newest = newest.max(event.ts_ms);
        }
        for kind in [
            "play_start",
            "heartbeat",
            "impression",
            "click",
            "search",
            "complete",
        ] {
            assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
        }
    }

    #[test]
    fn restamp_moves_only_the_event_time() {
        let door = crate::privacy::Pseudonymizer::new(b"generator test key");
        for mut record in Generator::new(GenConfig::default()).take(100) {
            let before = crate::decode::decode_event(Some(record.json.as_bytes()), &door).unwrap();
            assert!(record.due_ms >= record.ts_ms);
            record.restamp(1_800_000_000_123);
            let after = crate::decode::decode_event(Some(record.json.as_bytes()), &door).unwrap();
            assert_eq!(record.ts_ms, 1_800_000_000_123);
            assert_eq!(after.ts_ms, 1_800_000_000_123);
            assert_eq!((after.viewer, &after.kind), (before.viewer, &before.kind));
        }
    }

    /// Simulated time saturates at the end of u64 rather than wrapping back to 1970: a
    /// generator started there keeps its events in order and past their start.
    #[test]
    fn time_never_wraps_near_the_end_of_u64() {
        let start_ms = u64::MAX - 15_000;
        let config = GenConfig {
            viewers: 20,
            start_ms,
            disorder: 0.0,
            ..GenConfig::default()
        };
        let mut last = 0;
        for record in Generator::new(config).take(2_000) {
            assert!(
                record.ts_ms >= start_ms && record.ts_ms >= last,
                "{}",
                record.ts_ms
            );
            assert!(record.due_ms >= record.ts_ms);
            last = record.ts_ms;
        }
        assert_eq!(last, u64::MAX);
    }

    #[test]
    fn title_records_decode() {
        let generator = Generator::new(GenConfig::default());
        for record in generator.title_records() {
            crate::decode::decode_title(Some(record.json.as_bytes())).unwrap();
        }
    }
}

/// Purposes the generated viewers grant and revoke.
pub const CONSENT_PURPOSES: [&str; 2] = ["personalization", "analytics"];

/// How a workload's consent records are shaped.
#[derive(Debug, Clone)]
pub struct ConsentShape {
    /// Fraction of viewers who ever send a consent record.
    pub viewers: f64,
    /// A consenting viewer's next grant or revocation of a purpose comes this long after the
    /// last, on average (uniform between half and one and a half times it).
    pub mean_gap_ms: u64,
    /// Fraction of records stamped up to `disorder_ms` early, inside the lateness.
    pub disorder: f64,
    pub disorder_ms: u64,
}

impl Default for ConsentShape {
    fn default() -> ConsentShape {
        ConsentShape {
            // Most viewers answer the consent prompt; the rest never consent to anything.
            viewers: 0.8,
            // Minutes apart, so a short run shows revocations and renewals at work.
            mean_gap_ms: 20 * 60_000,
            disorder: 0.05,
            disorder_ms: 3000,
        }
    }
}

/// The `consent` topic of a workload: for a share of the viewers, a first answer per purpose
/// a minute before the first event (a grant, mostly), then grants and revocations at random
/// gaps, a grant while granted renewing it. In `ts` order but for a little disorder within the
/// lateness; seeded apart from the events, so the events stay the same with or without it.
pub struct ConsentStream {
    shape: ConsentShape,
    rng: StdRng,
    /// (due ms, viewer, purpose index), earliest first.
    due: BinaryHeap<Reverse<(u64, u32, usize)>>,
    /// When the first answers are given.
    first_ms: u64,
}

impl ConsentStream {
    pub fn new(config: &GenConfig, shape: ConsentShape) -> ConsentStream {
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x0063_6f6e_7365_6e74);
        let mut due = BinaryHeap::new();
        let first_ms = config.start_ms.saturating_sub(60_000);
        for viewer in 0..config.viewers {
            if rng.random::<f64>() >= shape.viewers {
                continue;
            }
            for purpose in 0..CONSENT_PURPOSES.len() {
                due.push(Reverse((first_ms, viewer, purpose)));
            }
        }
        ConsentStream {
            shape,
            rng,
            due,
            first_ms,
        }
    }
}

impl Iterator for ConsentStream {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let Reverse((now, viewer, purpose)) = self.due.pop()?;
        // A first answer is mostly a grant; later ones are grants or revocations at even odds,
        // so grants also come while granted (renewals) and revocations while revoked.
        let odds = if now == self.first_ms { 0.85 } else { 0.5 };
        let granted = self.rng.random::<f64>() < odds;
        let gap = self.shape.mean_gap_ms.max(2);
        let next = now.saturating_add(self.rng.random_range(gap / 2..=gap + gap / 2));
        self.due.push(Reverse((next, viewer, purpose)));
        let ts_ms = if self.rng.random::<f64>() < self.shape.disorder {
            now.saturating_sub(self.rng.random_range(0..=self.shape.disorder_ms))
        } else {
            now
        };
        let key = format!("u{viewer:07}");
        let json = format!(
            r#"{{"user_id":"{key}","purpose":"{}","granted":{granted},"ts":{ts_ms}}}"#,
            CONSENT_PURPOSES[purpose]
        );
        Some(Record {
            key,
            json,
            ts_ms,
            due_ms: now,
        })
    }
}

#[cfg(test)]
mod consent_tests {
    use super::*;

    #[test]
    fn consent_records_are_seeded_valid_and_in_time_order() {
        let config = GenConfig {
            viewers: 200,
            ..GenConfig::default()
        };
        let take = || ConsentStream::new(&config, ConsentShape::default()).take(2_000);
        let records: Vec<Record> = take().collect();
        assert_eq!(records, take().collect::<Vec<_>>());
        let door = crate::privacy::Pseudonymizer::new(b"generator test key");
        let known = rewind_dataflows::Purpose::BUILT_IN;
        let (mut grants, mut revocations, mut due) = (0, 0, 0);
        for record in &records {
            let c =
                crate::decode::decode_consent(Some(record.json.as_bytes()), &door, &known).unwrap();
            assert!(record.due_ms >= due, "out of order");
            assert!(record.ts_ms + 3000 >= record.due_ms);
            due = record.due_ms;
            if c.granted {
                grants += 1
            } else {
                revocations += 1
            }
        }
        assert!(grants > 500 && revocations > 300, "{grants} {revocations}");
        let viewers: std::collections::BTreeSet<&str> =
            records.iter().map(|r| r.key.as_str()).collect();
        assert!((120..=190).contains(&viewers.len()), "{}", viewers.len());
    }
}

/// How a workload's erasure records are shaped.
#[derive(Debug, Clone)]
pub struct ErasureShape {
    /// One erasure comes this long after the last, on average (uniform between half and one
    /// and a half times it), of a viewer picked at random: a small share of the viewers over a
    /// run. The generator's viewers never stop, so every erased viewer keeps sending events
    /// after it, and the events' disorder sends some from before it after it.
    pub mean_gap_ms: u64,
}

impl Default for ErasureShape {
    fn default() -> ErasureShape {
        ErasureShape {
            // A minute apart: a short run shows erasures at work, and over an hour of a
            // thousand viewers, a few percent of them ask to be forgotten.
            mean_gap_ms: 60_000,
        }
    }
}

/// The `erasure` topic of a workload: `{user_id, ts}` records of random viewers, in `ts`
/// order, the first a gap after the first event. Seeded apart from the events and the
/// consent, so those stay the same with or without it.
pub struct ErasureStream {
    shape: ErasureShape,
    rng: StdRng,
    viewers: u32,
    next_ms: u64,
}

impl ErasureStream {
    pub fn new(config: &GenConfig, shape: ErasureShape) -> ErasureStream {
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x0065_7261_7375_7265);
        let next_ms = config.start_ms.saturating_add(gap(&shape, &mut rng));
        ErasureStream {
            shape,
            rng,
            viewers: config.viewers.max(1),
            next_ms,
        }
    }
}

fn gap(shape: &ErasureShape, rng: &mut StdRng) -> u64 {
    let gap = shape.mean_gap_ms.max(2);
    rng.random_range(gap / 2..=gap + gap / 2)
}

impl Iterator for ErasureStream {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let ts_ms = self.next_ms;
        self.next_ms = ts_ms.saturating_add(gap(&self.shape, &mut self.rng));
        let viewer = self.rng.random_range(0..self.viewers);
        let key = format!("u{viewer:07}");
        let json = format!(r#"{{"user_id":"{key}","ts":{ts_ms}}}"#);
        Some(Record {
            key,
            json,
            ts_ms,
            due_ms: ts_ms,
        })
    }
}

#[cfg(test)]
mod erasure_tests {
    use super::*;

    #[test]
    fn erasure_records_are_seeded_valid_rare_and_in_time_order() {
        let config = GenConfig {
            viewers: 500,
            ..GenConfig::default()
        };
        let take = || ErasureStream::new(&config, ErasureShape::default()).take(60);
        let records: Vec<Record> = take().collect();
        assert_eq!(records, take().collect::<Vec<_>>());
        let door = crate::privacy::Pseudonymizer::new(b"generator test key");
        let mut last = config.start_ms;
        for record in &records {
            let e = crate::decode::decode_erasure(Some(record.json.as_bytes()), &door).unwrap();
            assert_eq!(e.viewer, door.viewer_id(&record.key));
            assert!(record.ts_ms > last, "out of order");
            last = record.ts_ms;
        }
        // About an hour of simulated time: one an average minute apart.
        let span = last - config.start_ms;
        assert!((40..80).contains(&(span / 60_000)), "{span}");
        let viewers: std::collections::BTreeSet<&str> =
            records.iter().map(|r| r.key.as_str()).collect();
        assert!(viewers.len() > 50, "{}", viewers.len());
    }
}
