//! The feature catalog: which (entity kind, feature name) each feature index in history blocks
//! and online rows stands for. Indexes are given in order of first appearance and never change
//! or go away, so every block ever written keeps its meaning; a new feature only adds one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redb::ReadableTable;

use crate::codec::{put_varint, take_varint};
use crate::layout::{self, CATALOG};
use crate::{Result, StoreError};

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// (entity kind, feature name) by index.
    features: Vec<(String, String)>,
    by_name: HashMap<(String, String), u16>,
}

impl Catalog {
    /// The catalog as `table` holds it; a gap or a bad seal is damage.
    pub(crate) fn load(table: &impl ReadableTable<u16, &'static [u8]>) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for entry in table.iter()? {
            let (index, stored) = entry?;
            let index = index.value();
            let damaged = || StoreError::Unsealed {
                table: "catalog",
                key: index.to_string(),
            };
            let payload = layout::catalog_row(index)
                .open(stored.value())
                .ok_or_else(damaged)?;
            let (kind, name) = decode(payload).ok_or_else(damaged)?;
            if usize::from(index) != catalog.features.len() {
                return Err(damaged());
            }
            catalog.push(kind, name);
        }
        Ok(catalog)
    }

    fn push(&mut self, kind: &str, name: &str) -> u16 {
        let index = self.features.len() as u16;
        let key = (kind.to_string(), name.to_string());
        self.by_name.insert(key.clone(), index);
        self.features.push(key);
        index
    }

    /// The index of `name` of entities of `kind`, if the store has one.
    pub fn index(&self, kind: &str, name: &str) -> Option<u16> {
        // The catalog is a handful of features: a scan beats building owned keys to hash.
        self.features
            .iter()
            .position(|(k, n)| k == kind && n == name)
            .map(|i| i as u16)
    }

    /// (entity kind, feature name) of `index`.
    pub fn feature(&self, index: u16) -> Option<(&str, &str)> {
        self.features
            .get(usize::from(index))
            .map(|(k, n)| (k.as_str(), n.as_str()))
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The index of (`kind`, `name`), giving it the next one (and its sealed row, to insert in
    /// the same transaction) when it is new. `None` when every index is taken.
    pub(crate) fn index_or_add(
        &mut self,
        kind: &str,
        name: &str,
    ) -> Option<(u16, Option<Vec<u8>>)> {
        if let Some(&index) = self.by_name.get(&(kind.to_string(), name.to_string())) {
            return Some((index, None));
        }
        if self.features.len() > usize::from(u16::MAX) {
            return None;
        }
        let index = self.push(kind, name);
        let mut payload = Vec::new();
        put_varint(&mut payload, kind.len() as u64);
        payload.extend_from_slice(kind.as_bytes());
        payload.extend_from_slice(name.as_bytes());
        Some((index, Some(layout::catalog_row(index).seal(&payload))))
    }
}

/// The catalog as last loaded, shared by every snapshot of one handle: the catalog only grows,
/// so a snapshot whose table holds as many entries as the cache reuses it instead of reloading.
#[derive(Debug, Default)]
pub(crate) struct CatalogCache(RwLock<Arc<Catalog>>);

impl CatalogCache {
    /// The catalog `table` holds, from the cache when it has as many entries (O(1): redb keeps
    /// each tree's length in its root).
    pub(crate) fn get(
        &self,
        table: &impl ReadableTable<u16, &'static [u8]>,
    ) -> Result<Arc<Catalog>> {
        let cached = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        if cached.len() as u64 == table.len()? {
            return Ok(cached);
        }
        let loaded = Arc::new(Catalog::load(table)?);
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        // Another snapshot may have loaded a newer one meanwhile: keep the larger.
        if slot.len() < loaded.len() {
            *slot = loaded.clone();
        }
        Ok(loaded)
    }
}

fn decode(mut payload: &[u8]) -> Option<(&str, &str)> {
    let len = usize::try_from(take_varint(&mut payload)?).ok()?;
    if payload.len() < len {
        return None;
    }
    let (kind, name) = payload.split_at(len);
    Some((
        std::str::from_utf8(kind).ok()?,
        std::str::from_utf8(name).ok()?,
    ))
}

/// Inserts the catalog rows a commit added.
pub(crate) fn insert(txn: &redb::WriteTransaction, rows: &[(u16, Vec<u8>)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(CATALOG)?;
    for (index, sealed) in rows {
        table.insert(*index, sealed.as_slice())?;
    }
    Ok(())
}
