//! The list against a sorted model: order, joined bytes, bounds, diffs.

use super::*;
use crate::presence::{Entry, Origin, Write, WriteKind, Writer};

fn row(key: &str, ts: Millis) -> SnapshotEntry {
    let entry = Entry {
        instance_id: Some(key.into()),
        text: key.into(),
        ts,
        ..Entry::default()
    };
    let origin = Origin::new(Write {
        by: Writer::elsewhere(WriteKind::Remote),
        at: ts,
    });
    SnapshotEntry::new(Key::parse(key).unwrap(), &entry, 0, origin)
}

/// Checks every invariant of a sealed list, and that it holds `want`
/// as (key, ts) in list order.
fn check(list: &List, want: &[(String, Millis)]) {
    let got: Vec<(String, Millis)> = list.iter().map(|r| (r.key.to_string(), r.ts)).collect();
    assert_eq!(got, want);
    assert_eq!(list.len(), want.len());
    let mut joined = Vec::new();
    for part in list.parts.iter() {
        assert!(!part.dirty && !part.chunks.is_empty() && part.chunks.len() <= MAX_PART);
        let mut bytes = 0;
        for chunk in &part.chunks {
            assert!(!chunk.dirty && !chunk.rows.is_empty() && chunk.rows.len() <= MAX_CHUNK);
            let mut expect = Vec::new();
            for row in &chunk.rows {
                expect.push(b',');
                expect.extend_from_slice(&serde_json::to_vec(&row.entry()).unwrap());
                assert_eq!(row.entry().ts, row.ts);
                let at = row.json.as_ptr() as usize - chunk.bytes.as_ptr() as usize;
                assert!(
                    at + row.json.len() <= chunk.bytes.len(),
                    "json is in its chunk"
                );
            }
            assert_eq!(chunk.bytes, expect);
            bytes += chunk.bytes.len();
            joined.extend_from_slice(&chunk.bytes);
        }
        assert_eq!(part.bytes, bytes);
    }
    assert_eq!(list.bytes_len(), joined.len());
}

fn sorted(map: &std::collections::BTreeMap<String, Millis>) -> Vec<(String, Millis)> {
    let mut v: Vec<_> = map.iter().map(|(k, &ts)| (k.clone(), ts)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[test]
fn many_parts_stay_ordered_joined_and_diffable_through_moves() {
    let mut list = List::default();
    let mut model = std::collections::BTreeMap::new();
    // A pseudo-random walk: inserts, moves to the front, removals.
    let mut seed: u64 = 7;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        seed >> 33
    };
    for i in 0..20_000 {
        let key = format!("k{:05}", next() % 30_000);
        if let Some(ts) = model.insert(key.clone(), (i / 8) as Millis) {
            assert!(list.remove(ts, &Key::parse(&key).unwrap()));
        }
        list.insert(row(&key, (i / 8) as Millis));
    }
    list.seal();
    check(&list, &sorted(&model));
    assert!(list.parts.len() > 2, "{} parts", list.parts.len());
    for round in 0..5 {
        let before = list.clone();
        let mut moved = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let key = model
                .keys()
                .nth(next() as usize % model.len())
                .unwrap()
                .clone();
            let ts = model[&key];
            assert!(list.remove(ts, &Key::parse(&key).unwrap()));
            if round % 2 == 0 {
                model.remove(&key);
            } else {
                model.insert(key.clone(), 10_000 + round);
                list.insert(row(&key, 10_000 + round));
            }
            moved.insert(key);
        }
        // Whole runs removed: small chunks and parts merge.
        if round == 4 {
            let gone: Vec<String> = model.keys().take(model.len() / 2).cloned().collect();
            for key in gone {
                assert!(list.remove(model[&key], &Key::parse(&key).unwrap()));
                model.remove(&key);
                moved.insert(key);
            }
        }
        list.seal();
        check(&list, &sorted(&model));
        check(
            &before,
            &before
                .iter()
                .map(|r| (r.key.to_string(), r.ts))
                .collect::<Vec<_>>(),
        );
        let (mut added, mut dropped) = (Vec::new(), Vec::new());
        diff(&before, &list, &mut added, &mut dropped);
        let touched: std::collections::BTreeSet<String> = added
            .iter()
            .chain(&dropped)
            .map(|r| r.key.to_string())
            .collect();
        assert_eq!(touched, moved, "round {round}");
    }
}

#[test]
fn get_finds_a_row_only_at_its_ts() {
    let mut list = List::default();
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        list.insert(row(key, i as Millis));
    }
    list.seal();
    let b = Key::parse("b").unwrap();
    assert_eq!(list.get(1, &b).map(|r| r.ts), Some(1));
    assert!(list.get(2, &b).is_none());
    assert!(!list.remove(2, &b));
}

/// Calls of [`copy_counted`], by [`a_chunk_is_deflated_once_for_every_version_sharing_it`] alone.
static DEFLATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn copy_counted(bytes: &[u8]) -> Bytes {
    DEFLATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Bytes::copy_from_slice(bytes)
}

#[test]
fn a_chunk_is_deflated_once_for_every_version_sharing_it() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut list = List::default();
    for i in 0..1_000 {
        list.insert(row(&format!("k{i:04}"), i));
    }
    list.seal();
    let first = list.clone();
    let chunks = first.chunks().count();
    let deflated: Vec<Bytes> = first.deflated_chunks(copy_counted).cloned().collect();
    assert_eq!(DEFLATED.load(Relaxed), chunks);
    assert!(deflated.iter().eq(first.chunks()));
    // Again: nothing is compressed twice.
    assert_eq!(first.deflated_chunks(copy_counted).count(), chunks);
    assert_eq!(DEFLATED.load(Relaxed), chunks);

    // The next version edits the first chunk (the newest row goes
    // first): only what it edited is compressed again, and every chunk it
    // shares with the first version keeps its compressed bytes.
    list.insert(row("k9999", 5_000));
    list.seal();
    let old: Vec<*const u8> = first.chunks().map(|c| c.as_ptr()).collect();
    let edited = list.chunks().filter(|c| !old.contains(&c.as_ptr())).count();
    assert!((1..=2).contains(&edited), "{edited} of {chunks} edited");
    let second: Vec<&Bytes> = list.deflated_chunks(copy_counted).collect();
    assert_eq!(DEFLATED.load(Relaxed), chunks + edited);
    assert!(second.iter().copied().eq(list.chunks()), "nothing is stale");
    let reused = second
        .iter()
        .filter(|b| deflated.iter().any(|d| d.as_ptr() == b.as_ptr()))
        .count();
    assert_eq!(reused, list.chunks().count() - edited);
}

thread_local! {
    /// Bytes [`poly`] has summed on this thread.
    static SUMMED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A checksum that combines like CRC-32: the bytes as digits base 257
/// (plus one, so zeros count), wrapping; counts the bytes it sums.
fn poly(bytes: &[u8]) -> u32 {
    SUMMED.with(|n| n.set(n.get() + bytes.len()));
    bytes.iter().fold(0u32, |h, &b| {
        h.wrapping_mul(257).wrapping_add(u32::from(b) + 1)
    })
}

fn poly_combine(a: u32, b: u32, len: usize) -> u32 {
    let shift = (0..len).fold(1u32, |p, _| p.wrapping_mul(257));
    a.wrapping_mul(shift).wrapping_add(b)
}

fn joined(list: &List) -> Vec<u8> {
    list.chunks().flat_map(|c| c.iter().copied()).collect()
}

#[test]
fn the_checksum_sums_only_what_a_publish_edited() {
    let summed = || SUMMED.with(std::cell::Cell::get);
    let mut list = List::default();
    assert_eq!(list.checksum(poly, poly_combine), 0);
    for i in 0..10_000 {
        list.insert(row(&format!("k{i:05}"), i));
    }
    list.seal();
    assert!(list.parts.len() >= 3, "{} parts", list.parts.len());
    let first = list.clone();
    let before = summed();
    let sum = first.checksum(poly, poly_combine);
    assert_eq!(summed() - before, first.bytes_len(), "every chunk once");
    assert_eq!(poly(&joined(&first)), sum);
    let before = summed();
    assert_eq!(first.checksum(poly, poly_combine), sum);
    assert_eq!(summed(), before, "kept, not summed again");

    // The next version edits a few chunks: only those are summed again.
    list.insert(row("k99999", 50_000));
    assert!(list.remove(5_000, &Key::parse("k05000").unwrap()));
    list.seal();
    let old: Vec<*const u8> = first.chunks().map(|c| c.as_ptr()).collect();
    let edited: usize = list
        .chunks()
        .filter(|c| !old.contains(&c.as_ptr()))
        .map(Bytes::len)
        .sum();
    assert!(edited > 0 && edited * 10 < list.bytes_len());
    let before = summed();
    let second = list.checksum(poly, poly_combine);
    assert_eq!(summed() - before, edited);
    assert_eq!(second, poly(&joined(&list)));
    assert_ne!(second, sum);
    assert_eq!(
        first.checksum(poly, poly_combine),
        sum,
        "the old version keeps its own"
    );
}

#[test]
fn batches_in_any_order_and_single_edits_both_match_the_model() {
    let (mut batched, mut single) = (List::default(), List::default());
    let mut model = std::collections::BTreeMap::new();
    let mut seed: u64 = 11;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        seed >> 33
    };
    // Batches of every size, from empty to several parts' worth, moving
    // rows to the front (one `ts` per batch, as a writer batch does),
    // into the middle, and removing them.
    for (round, size) in [0, 1, 5_000, 64, 9_000, 300, 2, 12_000, 40]
        .into_iter()
        .enumerate()
    {
        let ts = round as Millis * 10;
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        for _ in 0..size {
            let key = format!("k{:05}", next() % 20_000);
            if !keys.insert(key.clone()) {
                continue;
            }
            if let Some(old) = model.remove(&key) {
                removed.push((old, Key::parse(&key).unwrap()));
            }
            if next() % 4 != 0 {
                let at = if next() % 3 == 0 { ts - 5 } else { ts };
                model.insert(key.clone(), at);
                added.push(row(&key, at));
            }
        }
        for (ts, key) in &removed {
            assert!(single.remove(*ts, key));
        }
        for row in &added {
            single.insert(row.clone());
        }
        assert_eq!(batched.remove_rows(&mut removed), removed.len());
        batched.insert_rows(added);
        batched.seal();
        single.seal();
        check(&batched, &sorted(&model));
        check(&single, &sorted(&model));
    }
    assert!(batched.parts.len() > 2, "{} parts", batched.parts.len());
    // Rows that are not there are not found, and nothing changes.
    let before = batched.clone();
    let mut absent = [(1_000_000, Key::parse("nope").unwrap())];
    assert_eq!(batched.remove_rows(&mut absent), 0);
    batched.seal();
    check(&batched, &sorted(&model));
    check(&before, &sorted(&model));
}
