//! What a viewer watched, started and likes. Feeds the home-screen ranker.

use crate::prelude::*;

/// The viewer features, in catalog order.
pub fn features() -> Vec<Feature> {
    use Purpose::*;
    vec![
        // Sum: abelian, one running total per viewer.
        Feature::new("viewer.watch_seconds_1h")
            .describe("seconds of playback (sum of heartbeat interval_s) in the last hour")
            .purposes(&[Personalization, Analytics])
            .aggregate(heartbeats().by_viewer().sum_seconds(|h| h.interval_ms).over(hours(1))),
        // Count: abelian.
        Feature::new("viewer.completes_1h")
            .describe("number of titles played to the end (complete events) in the last hour")
            .purposes(&[Personalization, Analytics])
            .aggregate(completes().by_viewer().count().over(hours(1))),
        // Count: abelian.
        Feature::new("viewer.plays_24h")
            .describe("number of play_start events in the last 24 hours")
            .purposes(&[Personalization, Analytics])
            .aggregate(play_starts().by_viewer().count().over(hours(24))),
        // Share: seconds summed per (viewer, title) before the window and the join with titles;
        // the map is rebuilt per viewer from the sums per genre.
        Feature::new("viewer.genre_share_90d")
            .describe("genre -> share of heartbeat seconds in the last 90 days (a title's seconds count for each of its genres)")
            .purposes(&[Personalization])
            .aggregate(
                heartbeats()
                    .by_viewer()
                    .share_by_title(|title| title.genres.clone(), |h| h.interval_ms)
                    .over(days(90)),
            ),
        // Last-k distinct: needs the values (latest play per title), not abelian.
        Feature::new("viewer.last_titles_10")
            .describe("up to 10 distinct titles by latest play_start, newest first (ties: title_id ascending)")
            .purposes(&[Personalization])
            .aggregate(
                play_starts()
                    .by_viewer()
                    .last_distinct(10, |p| p.title.clone(), |p| p.ts_ms)
                    .within_retention(),
            ),
        // Sum: abelian, over the retention limit.
        Feature::new("viewer.lifetime_watch_s")
            .describe("seconds of playback (sum of heartbeat interval_s) within retention")
            .purposes(&[Personalization, Analytics])
            .aggregate(heartbeats().by_viewer().sum_seconds(|h| h.interval_ms).within_retention()),
        // The tutorial's feature (docs/writing-features.md). Count: abelian.
        Feature::new("viewer.searches_1h")
            .describe("number of searches in the last hour")
            .purposes(&[Personalization])
            .aggregate(searches().by_viewer().count().over(hours(1))),
    ]
}
