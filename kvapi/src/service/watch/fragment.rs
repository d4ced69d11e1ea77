//! Splitting a large watch response into fragments, as etcd's `sendFragments` does for watchers
//! created with `fragment: true`.
//!
//! A response smaller than the limit, or with fewer than two events, goes out whole. Otherwise
//! events are packed greedily: a fragment takes events while it stays under the limit, but always
//! at least one (an event is never split). Every fragment but the last has `fragment: true`.

use prost::Message;

use crate::pb::etcdserverpb as pb;

/// Field number of `WatchResponse.events`.
const EVENTS_FIELD: u32 = 11;

pub fn fragments(mut response: pb::WatchResponse, limit: usize) -> Vec<pb::WatchResponse> {
    if response.events.len() < 2 || response.encoded_len() < limit {
        return vec![response];
    }
    let events = std::mem::take(&mut response.events);
    response.fragment = true;
    let base = response.encoded_len();

    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = base;
    for event in events {
        let event_len = prost::encoding::message::encoded_len(EVENTS_FIELD, &event);
        if !current.is_empty() && size + event_len >= limit {
            out.push(pb::WatchResponse {
                events: std::mem::take(&mut current),
                ..response.clone()
            });
            size = base;
        }
        size += event_len;
        current.push(event);
    }
    out.push(pb::WatchResponse {
        events: current,
        fragment: false,
        ..response
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb;
    use bytes::Bytes;

    fn event(i: usize, value_len: usize) -> mvccpb::Event {
        mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: Bytes::from(format!("key-{i}")),
                create_revision: 5,
                mod_revision: 5,
                version: 1,
                value: Bytes::from(vec![b'x'; value_len]),
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    fn response(events: Vec<mvccpb::Event>) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 5,
                raft_term: 3,
            }),
            watch_id: 7,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn small_or_single_event_responses_go_out_whole() {
        let small = response((0..10).map(|i| event(i, 10)).collect());
        assert_eq!(fragments(small.clone(), 1 << 20), vec![small]);
        let single = response(vec![event(0, 10_000)]);
        assert_eq!(fragments(single.clone(), 100), vec![single]);
    }

    #[test]
    fn large_responses_are_split_in_order_under_the_limit() {
        let events: Vec<_> = (0..100).map(|i| event(i, 1000)).collect();
        let limit = 10_000;
        let parts = fragments(response(events.clone()), limit);
        assert!(parts.len() > 1);
        let (last, rest) = parts.split_last().expect("at least one part");
        assert!(!last.fragment);
        for part in rest {
            assert!(part.fragment);
            assert!(
                part.encoded_len() < limit,
                "{} >= {limit}",
                part.encoded_len()
            );
        }
        for part in &parts {
            assert_eq!(part.watch_id, 7);
            assert_eq!(part.header.map(|h| h.revision), Some(5));
            assert!(!part.events.is_empty());
        }
        let rejoined: Vec<_> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(rejoined, events);
    }

    #[test]
    fn an_oversized_event_gets_a_fragment_of_its_own() {
        let events = vec![event(0, 10), event(1, 50_000), event(2, 10)];
        let parts = fragments(response(events), 1000);
        let sizes: Vec<usize> = parts.iter().map(|p| p.events.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert_eq!(parts.iter().filter(|p| p.fragment).count(), 2);
    }

    #[test]
    fn packing_matches_etcds_greedy_rule() {
        // Each fragment is as full as the limit allows: adding its successor's first event
        // would reach the limit.
        let events: Vec<_> = (0..40).map(|i| event(i, 100 + i * 7)).collect();
        let limit = 1500;
        let parts = fragments(response(events), limit);
        for pair in parts.windows(2) {
            let mut grown = pair[0].clone();
            grown.events.push(pair[1].events[0].clone());
            assert!(grown.encoded_len() >= limit);
        }
    }
}
