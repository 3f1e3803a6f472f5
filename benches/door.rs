//! The privacy door, per record: decoding a generated `events` record (the schema's fields
//! only, the viewer pseudonymized), and the pseudonym alone (HMAC-SHA256 of the account id).
//! No Kafka, no dataflow: what the worker spends per record before the dataflow sees it.
//! Two populations: 10k viewers (each pseudonym asked again and again, as in live traffic)
//! and 200k records of 1M viewers (nearly every record a viewer not seen for a while).
//!
//! Run: `cargo bench --bench door`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rewind::decode::decode_event;
use rewind::privacy::Pseudonymizer;
use rewind::workload::{GenConfig, Generator};

fn records(viewers: u32, count: usize) -> Vec<Vec<u8>> {
    Generator::new(GenConfig {
        viewers,
        ..GenConfig::default()
    })
    .take(count)
    .map(|r| r.json.into_bytes())
    .collect()
}

fn decode_all(records: &[Vec<u8>], door: &Pseudonymizer) {
    for record in records {
        std::hint::black_box(decode_event(Some(record), door).unwrap());
    }
}

fn door(c: &mut Criterion) {
    let door = Pseudonymizer::new(b"the benchmark's pseudonym key");
    let few = records(10_000, 10_000);
    let many = records(1_000_000, 200_000);

    let mut group = c.benchmark_group("door");
    group.throughput(Throughput::Elements(few.len() as u64));
    group.bench_function("decode_event (10k generated records)", |b| {
        b.iter(|| decode_all(&few, &door))
    });
    group.throughput(Throughput::Elements(many.len() as u64));
    group.bench_function("decode_event (200k records of 1M viewers)", |b| {
        b.iter(|| decode_all(&many, &door))
    });
    group.throughput(Throughput::Elements(10_000));
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
