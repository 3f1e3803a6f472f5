//! How titles are doing right now. Feeds trending rows and ranking.

use crate::prelude::*;

/// The title features, in catalog order.
pub fn features() -> Vec<Feature> {
    use Purpose::*;
    vec![
        // Distinct count: keeps the windowed (title, viewer) pairs, not abelian in the viewer.
        Feature::new("title.plays_1h")
            .describe("number of distinct viewers with a play_start in the last hour")
            .purposes(&[Personalization, Analytics])
            .aggregate(
                play_starts()
                    .by_title()
                    .count_distinct(|p| p.viewer)
                    .over(hours(1)),
            ),
        // Ratio of two abelian counts: one (clicks, impressions) pair per title.
        Feature::new("title.ctr_24h")
            .describe("clicks / impressions in the last 24 hours; null without impressions")
            .purposes(&[Personalization, Analytics, Ads])
            .aggregate(ratio(
                clicks().by_title().count().over(hours(24)),
                impressions().by_title().count().over(hours(24)),
            )),
    ]
}
