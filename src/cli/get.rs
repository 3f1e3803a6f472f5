//! `rewind get`: current feature values of one entity, read-only, while a run may write.

use super::outln;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use rewind_dataflows::{Entity, library};
use rewind_state::ReadOnlyStore;
use serde_json::{Map, Value, json};

/// Print the current feature values of a viewer or a title as JSON.
///
/// Opens the store read-only, so it works while `rewind run` writes it, and after a run that
/// died (it repairs the file first). Features at their default (no row) are shown with their
/// default value and `valid_from_ms: null`.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    entity: EntityArg,
    /// A viewer id (`v_…`) or a title id.
    id: String,
    /// Only this feature (full name, e.g. viewer.plays_24h).
    #[arg(long)]
    feature: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EntityArg {
    Viewer,
    Title,
}

pub fn run(args: GetArgs) -> anyhow::Result<()> {
    let entity = match args.entity {
        EntityArg::Viewer => Entity::Viewer,
        EntityArg::Title => Entity::Title,
    };
    let defs: Vec<_> = library()
        .into_iter()
        .filter(|d| d.entity() == Some(entity))
        .collect();
    if let Some(name) = &args.feature
        && !defs.iter().any(|d| d.name == name)
    {
        let known: Vec<_> = defs.iter().map(|d| d.name).collect();
        bail!(
            "no {} feature {name:?}; known: {}",
            entity.as_str(),
            known.join(", ")
        );
    }
    let store = ReadOnlyStore::open(&args.store)?;
    let snap = store.snapshot()?;
    let rows = snap.online(entity.as_str(), &args.id)?;
    let mut features = Map::new();
    for def in defs
        .iter()
        .filter(|d| args.feature.as_deref().is_none_or(|f| f == d.name))
    {
        let row = rows.iter().find(|r| r.feature == def.name);
        let entry = match row {
            Some(r) => json!({
                "value": serde_json::from_slice::<Value>(&r.value_json)?,
                "valid_from_ms": r.valid_from_ms,
            }),
            None => json!({
                "value": serde_json::from_str::<Value>(def.default_json())?,
                "valid_from_ms": null,
            }),
        };
        features.insert(def.name.to_string(), entry);
    }
    let out = json!({
        "entity": entity.as_str(),
        "id": args.id,
        "as_of_ms": snap.meta_u64("as_of_ms")?,
        "features": features,
    });
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}
