//! The privacy door, checked on the bytes of the store file: no raw account id, email, ip or
//! device id of the log may be found in it.

use rewind::workload::GenConfig;

use crate::common;

#[test]
fn the_store_file_holds_no_raw_identifier() {
    let config = GenConfig {
        viewers: 50,
        titles: 10,
        seed: 5,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 10_000);
    let log = common::log(2);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    assert!(summary.changes_written > 0);

    let bytes = std::fs::read(store.path().join(rewind_state::FILE_NAME)).unwrap();
    // Needles are ASCII, so a lossy view of the file finds them wherever the bytes are.
    let text = String::from_utf8_lossy(&bytes);
    let mut needles = std::collections::BTreeSet::new();
    for record in &events {
        let v: serde_json::Value = serde_json::from_str(&record.json).unwrap();
        for field in ["user_id", "email", "ip", "device_id"] {
            needles.insert(v[field].as_str().unwrap().to_string());
        }
    }
    assert!(needles.len() > 150);
    for needle in &needles {
        assert!(
            !text.contains(needle.as_str()),
            "{needle:?} is in the store file"
        );
    }
    // The pseudonyms, on the other hand, are there.
    let pseudonym = common::door().viewer_id("u0000001").to_string();
    assert!(text.contains(&pseudonym));
}
