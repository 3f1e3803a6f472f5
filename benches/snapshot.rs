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

    let started = Instant::now();
    let labels = snapshot::read_labels(&labels_path).unwrap();
    let read_s = started.elapsed().as_secs_f64();
    let request = Request {
        features: Vec::new(),
        raw_ids: None,
    };
    let started = Instant::now();
    let batch = snapshot::cut(&store.snapshot().unwrap(), &labels, &request, |_, _| {}).unwrap();
    let cut_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    snapshot::write(&batch, &dir.path().join("out.parquet")).unwrap();
    let write_s = started.elapsed().as_secs_f64();
    println!(
        "snapshot of {n} label rows x {} feature columns, {} viewers: read labels {read_s:.2} s, \
         cut {cut_s:.2} s, write parquet {write_s:.2} s, total {:.2} s",
        batch.num_columns() - 2,
        viewers.len(),
        read_s + cut_s + write_s
    );
}
