//! The privacy door, per record: decoding a generated `events` record (the schema's fields
//! only, the viewer pseudonymized), and the pseudonym alone (HMAC-SHA256 of the account id).
//! No Kafka, no dataflow: what the worker spends per record before the dataflow sees it.
//!
//! Run: `cargo bench --bench door`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rewind::decode::decode_event;
use rewind::privacy::Pseudonymizer;
use rewind::workload::{GenConfig, Generator};

fn door(c: &mut Criterion) {
    let door = Pseudonymizer::new(b"the benchmark's pseudonym key");
    let records: Vec<Vec<u8>> = Generator::new(GenConfig {
        viewers: 10_000,
        ..GenConfig::default()
    })
    .take(10_000)
    .map(|r| r.json.into_bytes())
    .collect();

    let mut group = c.benchmark_group("door");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("decode_event (10k generated records)", |b| {
        b.iter(|| {
            for record in &records {
                std::hint::black_box(decode_event(Some(record), &door).unwrap());
            }
        })
    });
    let accounts: Vec<String> = (0..10_000).map(|i| format!("u{i:07}")).collect();
    group.bench_function("pseudonymize (10k account ids)", |b| {
        b.iter(|| {
            for account in &accounts {
                std::hint::black_box(door.viewer_id(account));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, door);
criterion_main!(benches);
