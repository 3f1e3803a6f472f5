//! Feature services: named lists of features a model reads together, as Feast's
//! `FeatureService` is. A model server asks for `"feature_service": "home_ranker_v1"` and gets
//! exactly the features its model was trained on, in this order; changing what a model reads
//! means a new service (`_v2`), not an edit, so a deployed model keeps its inputs.

use crate::feature::Feature;

/// A named list of features, each by its full name (`entity.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureService {
    pub name: &'static str,
    pub description: &'static str,
    pub features: &'static [&'static str],
}

/// The built-in services.
pub fn services() -> Vec<FeatureService> {
    vec![
        // The home-screen ranker scores (viewer, title) pairs: what the viewer watches and
        // likes, and how each candidate title is doing right now.
        FeatureService {
            name: "home_ranker_v1",
            description: "inputs of the home-screen ranker: the viewer's recent viewing and \
                          tastes, and each candidate title's momentum",
            features: &[
                "viewer.watch_seconds_1h",
                "viewer.completes_1h",
                "viewer.plays_24h",
                "viewer.genre_share_90d",
                "viewer.last_titles_10",
                "title.plays_1h",
                "title.ctr_24h",
            ],
        },
        // Trending rows need no viewer at all.
        FeatureService {
            name: "trending_v1",
            description: "what the trending rows sort titles by",
            features: &["title.plays_1h", "title.ctr_24h"],
        },
    ]
}

/// Every problem with `services` against the feature `library`: unknown or repeated features,
/// repeated or empty services. Empty when they are sound.
pub fn check(services: &[FeatureService], library: &[Feature]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, service) in services.iter().enumerate() {
        if services[..i].iter().any(|s| s.name == service.name) {
            problems.push(format!(
                "feature service {:?} is defined twice",
                service.name
            ));
        }
        if service.features.is_empty() {
            problems.push(format!(
                "feature service {:?} lists no feature",
                service.name
            ));
        }
        for (j, feature) in service.features.iter().enumerate() {
            if !library.iter().any(|f| f.name == *feature) {
                problems.push(format!(
                    "feature service {:?} lists {feature:?}, which is not in the library",
                    service.name
                ));
            }
            if service.features[..j].contains(feature) {
                problems.push(format!(
                    "feature service {:?} lists {feature:?} twice",
                    service.name
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_services_name_only_library_features() {
        assert_eq!(check(&services(), &crate::library()), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_or_repeated_feature_is_named() {
        let bad = [
            FeatureService {
                name: "ranker",
                description: "",
                features: &["viewer.plays_24h", "viewer.nope", "viewer.plays_24h"],
            },
            FeatureService {
                name: "ranker",
                description: "",
                features: &[],
            },
        ];
        let problems = check(&bad, &crate::library());
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("\"viewer.nope\", which is not in the library"));
        assert!(problems[1].contains("\"viewer.plays_24h\" twice"));
    }
}
