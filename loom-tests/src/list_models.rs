//! The models of the persistent list: a reader holding a published list
//! while the writer edits the next one.

use crate::engine::SnapshotCell;
use crate::presence::entry::Millis;
use crate::presence::key::Key;
use crate::presence::list::List;
use crate::presence::row::SnapshotEntry;
use loom::sync::Arc;
use loom::thread;

fn row(key: &str, ts: Millis) -> SnapshotEntry {
    SnapshotEntry {
        key: Key(key.to_owned()),
        ts,
        seq: 0,
        json: bytes::Bytes::from(format!("{{\"k\":\"{key}\",\"ts\":{ts}}}")),
    }
}

/// The list as (key, ts), after checking that its joined bytes are its
/// rows' JSON, in order.
fn read(list: &List) -> Vec<(String, Millis)> {
    let mut joined = Vec::new();
    for row in list.iter() {
        joined.push(b',');
        joined.extend_from_slice(&row.json);
    }
    let chunks: Vec<u8> = list.chunks().flat_map(|c| c.iter().copied()).collect();
    assert_eq!(chunks, joined, "a chunk's bytes are its rows' JSON");
    list.iter()
        .map(|row| (row.key.0.clone(), row.ts))
        .collect()
}

fn version(rows: &[(&str, Millis)]) -> Vec<(String, Millis)> {
    rows.iter().map(|&(k, ts)| (k.to_owned(), ts)).collect()
}

/// A reader that loaded a version sees it whole and unchanged however the
/// writer edits the next versions meanwhile, and only ever sees versions
/// the writer published.
#[test]
fn a_held_list_never_changes_while_the_writer_edits_the_next() {
    crate::models::model("a_held_list_never_changes_while_the_writer_edits_the_next", || {
        let mut list = List::default();
        for (key, ts) in [("a", 3), ("b", 2), ("c", 1)] {
            list.insert(row(key, ts));
        }
        list.seal();
        let cell = Arc::new(SnapshotCell::new(Arc::new(list.clone()), 1));
        let versions = [
            version(&[("a", 3), ("b", 2), ("c", 1)]),
            version(&[("b", 4), ("a", 3), ("c", 1)]),
            version(&[("a", 3), ("c", 1)]),
        ];

        let reader = {
            let cell = Arc::clone(&cell);
            let versions = versions.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let held = cell.load_full();
                    let first = read(&held);
                    assert!(versions.contains(&first), "{first:?} was published");
                    thread::yield_now();
                    assert_eq!(read(&held), first, "a held version never changes");
                }
            })
        };

        // Version 2: `b` moves to the front.
        assert!(list.remove(2, &Key("b".into())));
        list.insert(row("b", 4));
        list.seal();
        cell.publish(Arc::new(list.clone()), 2);
        // Version 3, edited while the reader may hold version 2.
        assert!(list.remove(4, &Key("b".into())));
        list.seal();
        cell.publish(Arc::new(list.clone()), 3);
        assert_eq!(read(&list), versions[2]);

        reader.join().expect("the reader does not panic");
    });
}
