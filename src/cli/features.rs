//! `rewind features`: the catalog of the feature library.

use super::outln;
use clap::Args;
use rewind_dataflows::{Feature, library};
use serde_json::json;

/// List every feature: name, entity, type, default, window, purposes, description.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// One JSON array, for tools.
    #[arg(long)]
    json: bool,
}

pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let features = library();
    if args.json {
        let rows: Vec<_> = features.iter().map(entry).collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    outln!(
        "{:<26} {:<7} {:<20} {:<9} {:<34} DESCRIPTION",
        "NAME",
        "ENTITY",
        "TYPE",
        "WINDOW",
        "PURPOSES"
    )?;
    for f in &features {
        outln!(
            "{:<26} {:<7} {:<20} {:<9} {:<34} {}",
            f.name,
            f.entity().map_or("?", |e| e.as_str()),
            f.value_type().as_str(),
            f.window().map_or("-".into(), |w| w.to_string()),
            purposes(f).join(","),
            f.description
        )?;
    }
    Ok(())
}

fn purposes(f: &Feature) -> Vec<&'static str> {
    f.purposes.iter().map(|p| p.as_str()).collect()
}

fn entry(f: &Feature) -> serde_json::Value {
    json!({
        "name": f.name,
        "entity": f.entity().map(|e| e.as_str()),
        "type": f.value_type().as_str(),
        "default": serde_json::from_str::<serde_json::Value>(f.default_json()).unwrap_or_default(),
        "window": f.window().map(|w| w.to_string()),
        "window_ms": f.window().map(|w| w.millis()),
        "aggregation": if f.abelian() { "abelian" } else { "keeps values" },
        "purposes": purposes(f),
        "description": f.description,
    })
}
