//! Training snapshots at scale: N label rows of real viewer ids and times within a store's
//! span, every viewer feature as of each row, timed in its three parts (read the labels, cut,
//! write the training set). Isolates `rewind snapshot` from everything that built the store.
//!
//! Build a store first, then point the bench at it:
//!
//! ```text
//! rewind gen --viewers 10000 --titles 2000 --events 1000000 --out e.jsonl
//! REWIND_PSEUDONYM_KEY=00112233445566778899aabbccddeeff \
//!     rewind replay --file e.jsonl --titles-file e.titles.jsonl --store S
//! cargo bench --bench snapshot -- --store S [--labels 1000000] [--span-s 1000] [--seed 1]
//! ```
//!
//! Label times are uniform over the last `--span-s` seconds before the store's `as_of_ms`
//! (the gen file above spans ~1040 s); ids are drawn from the store's online viewers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rewind::snapshot::{self, Request};
use rewind_state::ReadOnlyStore;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn number(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    })
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`: on a shared
/// machine, wall time measures the neighbours too.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// Wall and CPU seconds of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_s());
    let out = f();
    (out, wall.elapsed().as_secs_f64(), cpu_s() - cpu)
}

fn main() {
    let Some(store) = arg("--store").map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench snapshot -- --store DIR [--labels N] [--span-s S]");
        return;
    };
    let n = number("--labels", 1_000_000) as usize;
    let span_ms = number("--span-s", 1000) * 1000;
    let mut rng = StdRng::seed_from_u64(number("--seed", 1));

    let store = ReadOnlyStore::open(&store).unwrap();
    let snap = store.snapshot().unwrap();
    let as_of = snap
        .meta_u64("as_of_ms")
        .unwrap()
        .expect("a store with output");
    let viewers: Vec<String> = snap
        .online_all()
        .unwrap()
        .into_iter()
        .filter(|(kind, _, _)| kind == "viewer")
        .map(|(_, id, _)| id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(!viewers.is_empty(), "the store has no viewers");
    let ids: Vec<&str> = (0..n)
        .map(|_| viewers[rng.random_range(0..viewers.len())].as_str())
        .collect();
    let times: Vec<i64> = (0..n)
        .map(|_| (as_of - rng.random_range(0..span_ms.min(as_of))) as i64)
        .collect();
    let schema = Schema::new(vec![
        Field::new("viewer_id", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(Int64Array::from(times)),
    ];
    let labels = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let labels_path = dir.path().join("labels.parquet");
    snapshot::write(&labels, &labels_path).unwrap();

    let (labels, read_s, read_cpu) = timed(|| snapshot::read_labels(&labels_path).unwrap());
    let request = Request {
        features: Vec::new(),
        raw_ids: None,
        purpose: None,
    };
    let snap = store.snapshot().unwrap();
    let (batch, cut_s, cut_cpu) =
        timed(|| snapshot::cut(&snap, &labels, &request, |_, _| {}).unwrap());
    let out = dir.path().join("out.parquet");
    let ((), write_s, write_cpu) = timed(|| snapshot::write(&batch, &out).unwrap());
    println!(
        "snapshot of {n} label rows x {} feature columns, {} viewers, wall (cpu) seconds: read \
         labels {read_s:.2} ({read_cpu:.2}), cut {cut_s:.2} ({cut_cpu:.2}), write parquet \
         {write_s:.2} ({write_cpu:.2}), total {:.2} ({:.2})",
        batch.num_columns() - 2,
        viewers.len(),
        read_s + cut_s + write_s,
        read_cpu + cut_cpu + write_cpu,
    );
}
