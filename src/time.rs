//! The time policy: how event time becomes logical time, and how far it may be trusted.
//!
//! An event at `ts` is visible from `t0`, the first tick boundary strictly after it. Each
//! partition keeps its own watermark, `max ts seen - lateness`; the partition promises no more
//! events below `floor_tick(watermark)`, so its frontier is the tick after that. An event whose
//! `t0` lies below its partition's frontier is late: it is applied at that frontier, and
//! counted. Because the placement depends only on the partition's own prefix, replaying a log
//! places every event at the same time again, whatever the interleaving of partitions.
//!
//! The sparse control topics (consent, erasure) have no clock here: one record a day would
//! make a watermark that holds everything back, and a first record nothing ever vouches for.
//! They are read to their end before time moves, like reference data, and land at their own
//! tick (consent) or as they are read (erasure), no earlier than the events' time
//! (`engine::worker`, `docs/privacy.md`).

use rewind_dataflows::TimeMs;
use rewind_dataflows::window::{floor_tick, visible_at};

/// How far one event may lead its partition before the partition's next event must vouch
/// for it. An hour is far beyond any reordering of honest clients, and a gap in traffic that
/// long is confirmed by the first event after it.
pub const MAX_JUMP_MS: u64 = 3_600_000;

/// Ticks and lateness, fixed for the life of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    /// Logical time advances in steps of this many ms. 1 s: finer costs a commit-able frontier
    /// per step; coarser delays every value by up to a tick.
    pub tick_ms: u64,
    /// How far behind the newest event an event may arrive and still be on time. 5 s covers
    /// the reordering of mobile clients batching their heartbeats.
    pub lateness_ms: u64,
}

impl Default for TimePolicy {
    fn default() -> TimePolicy {
        TimePolicy {
            tick_ms: 1000,
            lateness_ms: 5000,
        }
    }
}

/// Where one event lands in logical time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub time: TimeMs,
    pub late: bool,
}

/// The event-time clock of one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionClock {
    max_ts: Option<TimeMs>,
}

impl PartitionClock {
    /// The smallest time any later event of this partition can be placed at; 0 before any.
    pub fn frontier(&self, policy: &TimePolicy) -> TimeMs {
        self.max_ts.map_or(0, |max| Self::frontier_of(max, policy))
    }

    /// The frontier of a partition whose newest event is at `max_ts`.
    pub fn frontier_of(max_ts: TimeMs, policy: &TimePolicy) -> TimeMs {
        floor_tick(max_ts.saturating_sub(policy.lateness_ms), policy.tick_ms)
            .saturating_add(policy.tick_ms)
    }

    /// Places an event at `ts`, no earlier than `floor` (the input's current time), and moves
    /// the watermark.
    pub fn place(&mut self, ts: TimeMs, floor: TimeMs, policy: &TimePolicy) -> Placement {
        let t0 = visible_at(ts, policy.tick_ms);
        let frontier = self.frontier(policy).max(floor);
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        Placement {
            time: t0.max(frontier),
            late: t0 < frontier,
        }
    }

    pub fn max_ts(&self) -> Option<TimeMs> {
        self.max_ts
    }

    /// Whether an event at `ts` may only move this partition's watermark once the partition's
    /// next event vouches for it ([`vouches`]): the first event of a partition (nothing vouches
    /// for it yet), or one more than [`MAX_JUMP_MS`] past the partition's newest. One event
    /// stamped in 2099 must not make every later event late.
    pub fn needs_confirmation(&self, ts: TimeMs) -> bool {
        self.max_ts
            .is_none_or(|max| ts > max.saturating_add(MAX_JUMP_MS))
    }
}

/// Whether an event at `next_ts` confirms a held event at `held_ts`: it lands at most
/// [`MAX_JUMP_MS`] before it, or after it. Time really moved there; otherwise the held event
/// was a lone clock error.
pub fn vouches(next_ts: TimeMs, held_ts: TimeMs) -> bool {
    next_ts.saturating_add(MAX_JUMP_MS) >= held_ts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const P: TimePolicy = TimePolicy {
        tick_ms: 1000,
        lateness_ms: 5000,
    };

    #[test]
    fn events_within_lateness_land_at_their_own_tick() {
        let mut clock = PartitionClock::default();
        assert_eq!(
            clock.place(100_500, 0, &P),
            Placement {
                time: 101_000,
                late: false
            }
        );
        // 4.5 s older than the newest: inside the 5 s lateness.
        assert_eq!(
            clock.place(96_000, 0, &P),
            Placement {
                time: 97_000,
                late: false
            }
        );
        assert_eq!(clock.frontier(&P), 96_000);
    }

    #[test]
    fn events_beyond_lateness_land_at_the_frontier_and_are_counted() {
        let mut clock = PartitionClock::default();
        clock.place(100_000, 0, &P);
        assert_eq!(
            clock.place(90_000, 0, &P),
            Placement {
                time: 96_000,
                late: true
            }
        );
    }

    #[test]
    fn the_input_floor_wins_over_an_idle_partitions_frontier() {
        let mut clock = PartitionClock::default();
        assert_eq!(
            clock.place(10_000, 50_000, &P),
            Placement {
                time: 50_000,
                late: true
            }
        );
    }

    proptest! {
        /// Placement never goes below the frontier promised before it, never before the
        /// event's own tick, and the frontier never moves back.
        #[test]
        fn placement_keeps_the_partitions_promise(
            ts in proptest::collection::vec(1_000_000u64..1_100_000, 1..200)
        ) {
            let mut clock = PartitionClock::default();
            let mut promised = 0;
            for t in ts {
                let placed = clock.place(t, 0, &P);
                prop_assert!(placed.time >= promised);
                prop_assert!(placed.time >= visible_at(t, P.tick_ms));
                prop_assert_eq!(placed.time % P.tick_ms, 0);
                prop_assert_eq!(placed.late, visible_at(t, P.tick_ms) < promised);
                let next = clock.frontier(&P);
                prop_assert!(next >= promised);
                promised = next;
            }
        }
    }
}
