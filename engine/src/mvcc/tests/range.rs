//! Revisions, versions and range reads (current and historical).

use super::*;
use crate::kv::EventKind;
use crate::request::{SortOrder, SortTarget};

#[test]
fn empty_store_is_at_revision_one() {
    let f = open();
    assert_eq!(f.store.current_revision(), 1);
    assert_eq!(f.store.compact_revision(), 0);
    let (response, header) = f.store.range(&range_req("a", "")).expect("range");
    assert_eq!(header, 1);
    assert_eq!(response, RangeResponse::default());
}

#[test]
fn puts_bump_revision_and_version() {
    let f = open();
    assert_eq!(f.put("a", "1").revision, 2);
    assert_eq!(f.put("a", "2").revision, 3);
    assert_eq!(f.put("b", "1").revision, 4);
    let a = f.get("a").expect("a exists");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    assert_eq!(a.value, b("2"));
    assert_eq!(f.store.current_revision(), 4);
}

#[test]
fn delete_resets_version_and_create_revision() {
    let f = open();
    f.put("a", "1");
    f.put("a", "2");
    let deleted = f.delete("a", "");
    assert_eq!(deleted.revision, 4);
    let Ok(CommandResponse::DeleteRange(response)) = &deleted.result else {
        panic!("{deleted:?}")
    };
    assert_eq!(response.deleted, 1);
    assert_eq!(response.prev_kvs[0].version, 2);
    assert_eq!(
        deleted.events[0].kv,
        KeyValue {
            key: b("a"),
            mod_revision: 4,
            ..KeyValue::default()
        }
    );
    assert_eq!(deleted.events[0].kind, EventKind::Delete);
    assert_eq!(
        deleted.events[0].prev_kv.as_ref().map(|kv| kv.version),
        Some(2)
    );
    assert_eq!(f.get("a"), None);
    f.put("a", "3");
    let a = f.get("a").expect("recreated");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));
}

#[test]
fn delete_of_nothing_keeps_the_revision() {
    let f = open();
    f.put("a", "1");
    let output = f.delete("zz", "");
    assert_eq!(output.revision, 2);
    assert!(output.events.is_empty());
    let Ok(CommandResponse::DeleteRange(response)) = &output.result else {
        panic!()
    };
    assert_eq!(response.deleted, 0);
}

#[test]
fn put_events_carry_prev_kv() {
    let f = open();
    let first = f.put("a", "1");
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].prev_kv, None);
    let second = f.apply(Command::Put(PutRequest {
        prev_kv: true,
        ..put_req("a", "2")
    }));
    let prev = second.events[0].prev_kv.clone().expect("prev");
    assert_eq!((prev.value, prev.mod_revision), (b("1"), 2));
    let Ok(CommandResponse::Put(response)) = &second.result else {
        panic!()
    };
    assert_eq!(
        response.prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b("1"))
    );
}

#[test]
fn range_end_rules() {
    let f = open();
    for key in ["a", "b", "c", "d"] {
        f.put(key, "v");
    }
    assert_eq!(f.keys_at("b", "", 0), ["b"]);
    assert_eq!(f.keys_at("b", "\0", 0), ["b", "c", "d"]);
    assert_eq!(f.keys_at("\0", "\0", 0), ["a", "b", "c", "d"]);
    assert_eq!(f.keys_at("b", "d", 0), ["b", "c"]);
    assert!(f.keys_at("c", "b", 0).is_empty());
    assert!(f.keys_at("c", "c", 0).is_empty());
}

#[test]
fn limit_count_and_more() {
    let f = open();
    for key in ["a", "b", "c", "d"] {
        f.put(key, "v");
    }
    let req = RangeRequest {
        limit: 2,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(response.kvs.len(), 2);
    assert_eq!((response.count, response.more), (4, true));
    let req = RangeRequest {
        limit: 4,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(
        (response.kvs.len(), response.count, response.more),
        (4, 4, false)
    );
    let req = RangeRequest {
        count_only: true,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(
        (response.kvs.len(), response.count, response.more),
        (0, 4, false)
    );
    let req = RangeRequest {
        keys_only: true,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert!(
        response
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1)
    );
}

#[test]
fn sorting() {
    let f = open();
    f.put("a", "3");
    f.put("b", "1");
    f.put("c", "2");
    f.put("b", "1");
    let keys = |order, target| -> Vec<String> {
        let req = RangeRequest {
            sort_order: order,
            sort_target: target,
            ..range_req("a", "\0")
        };
        f.range(&req)
            .expect("range")
            .kvs
            .iter()
            .map(|kv| s(&kv.key))
            .collect()
    };
    assert_eq!(keys(SortOrder::None, SortTarget::Key), ["a", "b", "c"]);
    assert_eq!(keys(SortOrder::Descend, SortTarget::Key), ["c", "b", "a"]);
    assert_eq!(keys(SortOrder::Ascend, SortTarget::Value), ["b", "c", "a"]);
    assert_eq!(keys(SortOrder::None, SortTarget::Value), ["b", "c", "a"]);
    assert_eq!(keys(SortOrder::Descend, SortTarget::Mod), ["b", "c", "a"]);
    assert_eq!(keys(SortOrder::Ascend, SortTarget::Create), ["a", "b", "c"]);
    // Ties keep key order: a and c have version 1, b has 2.
    assert_eq!(
        keys(SortOrder::Ascend, SortTarget::Version),
        ["a", "c", "b"]
    );
    assert_eq!(
        keys(SortOrder::Descend, SortTarget::Version),
        ["b", "a", "c"]
    );
    let req = RangeRequest {
        sort_order: SortOrder::Descend,
        limit: 1,
        keys_only: true,
        sort_target: SortTarget::Value,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(
        (s(&response.kvs[0].key), response.kvs[0].value.len()),
        ("a".into(), 0)
    );
    assert_eq!((response.count, response.more), (3, true));
}

#[test]
fn revision_filters_prune_kvs_but_not_count() {
    let f = open();
    f.put("a", "1"); // 2
    f.put("b", "1"); // 3
    f.put("c", "1"); // 4
    f.put("a", "2"); // 5
    let req = RangeRequest {
        min_mod_revision: 4,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(
        response.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(response.count, 3);
    let req = RangeRequest {
        max_create_revision: 3,
        limit: 1,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(
        response.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(),
        ["a"]
    );
    assert!(response.more);
    let req = RangeRequest {
        min_create_revision: 3,
        max_mod_revision: 3,
        ..range_req("a", "\0")
    };
    let response = f.range(&req).expect("range");
    assert_eq!(
        response.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(),
        ["b"]
    );
}

#[test]
fn historical_reads() {
    let f = open();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.delete("a", ""); // 4
    f.put("b", "1"); // 5
    f.put("a", "3"); // 6
    assert_eq!(
        f.get_at("a", 2).expect("read").map(|kv| kv.value),
        Some(b("1"))
    );
    let at3 = f.get_at("a", 3).expect("read").expect("a at 3");
    assert_eq!(
        (at3.create_revision, at3.mod_revision, at3.version),
        (2, 3, 2)
    );
    assert_eq!(f.get_at("a", 4).expect("read"), None);
    assert_eq!(f.keys_at("a", "\0", 4), Vec::<String>::new());
    assert_eq!(f.keys_at("a", "\0", 5), ["b"]);
    assert_eq!(f.keys_at("a", "\0", 6), ["a", "b"]);
    assert_eq!(f.keys_at("\0", "\0", 1), Vec::<String>::new());
    let req = RangeRequest {
        revision: 3,
        limit: 1,
        ..range_req("a", "c")
    };
    let response = f.range(&req).expect("range");
    assert_eq!((response.count, response.more), (1, false));
    let (_, header) = f.store.range(&req).expect("range");
    assert_eq!(header, 6, "the header carries the current revision");
}

#[test]
fn keys_with_zero_bytes_and_prefixes_read_historically() {
    let f = open();
    f.put("a", "1"); // 2
    f.put("a\0", "2"); // 3
    f.put("a\0b", "3"); // 4
    f.put("ab", "4"); // 5
    f.delete("a\0", ""); // 6
    assert_eq!(f.keys_at("a", "\0", 5), ["a", "a\0", "a\0b", "ab"]);
    assert_eq!(f.keys_at("a", "\0", 6), ["a", "a\0b", "ab"]);
    assert_eq!(f.keys_at("a\0", "a\u{1}", 5), ["a\0", "a\0b"]);
    assert_eq!(f.keys_at("a\0", "", 4), ["a\0"]);
}

#[test]
fn future_and_compacted_revisions() {
    let f = open();
    f.put("a", "1");
    f.put("a", "2");
    f.put("a", "3");
    assert_eq!(f.get_at("a", 5), Err(KvError::FutureRevision));
    f.apply(Command::Compact { revision: 3 });
    assert_eq!(
        f.get_at("a", 2),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
    assert_eq!(
        f.get_at("a", 3)
            .expect("compact revision readable")
            .map(|kv| kv.value),
        Some(b("2"))
    );
    assert_eq!(
        f.get_at("a", 4).expect("readable").map(|kv| kv.value),
        Some(b("3"))
    );
}
