//! The other layout the log was measured in: append-only Parquet files per hour beside the
//! store, `served-<hour>-<slot>.parquet`, one row per (response, entity, feature). Each write
//! appends a row group and syncs it; the footer is written when the hour's file closes.
//! Kept only for `benches/served_log.rs`; see BENCHMARKS.md for why the redb layout won.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use super::Served;

const HOUR_MS: u64 = 3_600_000;

/// One process's hourly Parquet files.
pub struct ParquetLog {
    dir: PathBuf,
    slot: usize,
    schema: Arc<Schema>,
    open: Option<(u64, ArrowWriter<File>)>,
    sync: bool,
}

impl ParquetLog {
    /// `sync`: whether each append waits until the disk has it.
    pub fn new(dir: &Path, slot: usize, sync: bool) -> ParquetLog {
        let text = |name| Field::new(name, DataType::Utf8, false);
        let int = |name, nullable| Field::new(name, DataType::UInt64, nullable);
        let schema = Schema::new(vec![
            text("request_id"),
            int("served_at_ms", false),
            int("as_of_ms", false),
            text("entity_kind"),
            text("entity_id"),
            text("feature"),
            int("valid_from_ms", true),
            text("value"),
        ]);
        ParquetLog {
            dir: dir.to_path_buf(),
            slot,
            schema: Arc::new(schema),
            open: None,
            sync,
        }
    }

    /// Appends `batch` as one row group and syncs it to disk.
    pub fn append(&mut self, batch: &[Served]) -> Result<(), String> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let hour = first.served_at_ms / HOUR_MS;
        if self.open.as_ref().is_none_or(|(h, _)| *h != hour) {
            self.roll(hour)?;
        }
        let rows = self.rows(batch)?;
        let (_, writer) = self.open.as_mut().expect("rolled above");
        writer.write(&rows).map_err(|e| e.to_string())?;
        writer.flush().map_err(|e| e.to_string())?;
        match self.sync {
            true => writer.inner().sync_data().map_err(|e| e.to_string()),
            false => Ok(()),
        }
    }

    fn roll(&mut self, hour: u64) -> Result<(), String> {
        self.close()?;
        let name = format!("served-{hour}-{}.parquet", self.slot);
        let file = File::create(self.dir.join(name)).map_err(|e| e.to_string())?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(props))
            .map_err(|e| e.to_string())?;
        self.open = Some((hour, writer));
        Ok(())
    }

    fn rows(&self, batch: &[Served]) -> Result<RecordBatch, String> {
        let [mut request, mut kind, mut id, mut feature, mut value] =
            std::array::from_fn(|_| StringBuilder::new());
        let [mut served_at, mut as_of, mut valid_from] =
            std::array::from_fn(|_| UInt64Builder::new());
        for served in batch {
            for entity in &served.entities {
                for v in &entity.values {
                    request.append_value(&served.request_id);
                    served_at.append_value(served.served_at_ms);
                    as_of.append_value(served.as_of_ms);
                    kind.append_value(&entity.kind);
                    id.append_value(&entity.id);
                    feature.append_value(&v.feature);
                    valid_from.append_option(v.valid_from_ms);
                    value.append_value(&v.json);
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(request.finish()),
            Arc::new(served_at.finish()),
            Arc::new(as_of.finish()),
            Arc::new(kind.finish()),
            Arc::new(id.finish()),
            Arc::new(feature.finish()),
            Arc::new(valid_from.finish()),
            Arc::new(value.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }

    /// Writes the open file's footer.
    pub fn close(&mut self) -> Result<(), String> {
        match self.open.take() {
            Some((_, writer)) => writer.close().map(drop).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}
