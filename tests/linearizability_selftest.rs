//! Self-tests of the linearizability checker (`tests/common/linearizability.rs`). No server:
//! hand-written histories with known verdicts, random histories of a simulated store that are
//! linearizable by construction (and stop being so after a corrupted read), and small random
//! histories, some corrupted, on which the checker must agree with a brute-force search.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::linearizability::{Event, History, Op, Outcome, Verdict, check};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Generous: every history here is decided in far less.
const BUDGET: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ building histories

fn get(key: &str) -> Op {
    Op::Get {
        key: key.to_owned(),
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

fn delete(key: &str) -> Op {
    Op::Delete {
        key: key.to_owned(),
    }
}

fn cas(key: &str, expected: Option<&str>, new: &str) -> Op {
    Op::Cas {
        key: key.to_owned(),
        expected: expected.map(str::to_owned),
        new: new.to_owned(),
    }
}

fn read(value: Option<&str>) -> Outcome {
    Outcome::Get(value.map(str::to_owned))
}

/// An operation invoked at `invoke` and answered at `complete`.
fn done(client: usize, op: Op, (invoke, complete): (u64, u64), outcome: Outcome) -> Event {
    Event {
        client,
        op,
        invoke,
        complete: Some(complete),
        outcome,
    }
}

/// An operation invoked at `invoke` whose response never came (a timeout).
fn lost(client: usize, op: Op, invoke: u64) -> Event {
    Event {
        client,
        op,
        invoke,
        complete: None,
        outcome: Outcome::Unknown,
    }
}

/// Non-overlapping operations by one client, in order.
fn sequential(ops: Vec<(Op, Outcome)>) -> Vec<Event> {
    ops.into_iter()
        .zip(0u64..)
        .map(|((op, outcome), slot)| done(0, op, (10 * slot, 10 * slot + 5), outcome))
        .collect()
}

#[track_caller]
fn assert_linearizable(events: &[Event]) {
    let verdict = check(events, BUDGET);
    assert!(verdict.is_linearizable(), "{verdict}\nhistory: {events:#?}");
}

/// Asserts a violation on `key`; returns the explanation.
#[track_caller]
fn assert_violation_on(events: &[Event], key: &str) -> String {
    match check(events, BUDGET) {
        Verdict::Violation {
            key: violated,
            explanation,
        } => {
            assert_eq!(violated, key, "violation on the wrong key:\n{explanation}");
            explanation
        }
        other => panic!("expected a violation on {key:?}, got: {other}\nhistory: {events:#?}"),
    }
}

// ------------------------------------------------------------------ hand-written histories

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(&[]);
}

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(&sequential(vec![
        (get("k"), read(None)),
        (put("k", "a"), Outcome::Put),
        (get("k"), read(Some("a"))),
        (cas("k", Some("a"), "b"), Outcome::Cas { succeeded: true }),
        (cas("k", Some("a"), "c"), Outcome::Cas { succeeded: false }),
        (get("k"), read(Some("b"))),
        (delete("k"), Outcome::Delete { deleted: true }),
        (cas("k", None, "d"), Outcome::Cas { succeeded: true }),
        (get("k"), read(Some("d"))),
    ]));
}

#[test]
fn sequential_history_with_a_wrong_cas_is_a_violation() {
    let history = sequential(vec![
        (put("k", "a"), Outcome::Put),
        (cas("k", Some("a"), "b"), Outcome::Cas { succeeded: false }),
    ]);
    let explanation = assert_violation_on(&history, "k");
    assert!(explanation.contains("it failed but"), "{explanation}");
}

#[test]
fn concurrent_puts_may_take_effect_in_either_order() {
    for winner in ["a", "b"] {
        let history = vec![
            done(0, put("k", "a"), (0, 10), Outcome::Put),
            done(1, put("k", "b"), (1, 11), Outcome::Put),
            done(2, get("k"), (20, 30), read(Some(winner))),
            done(0, get("k"), (40, 50), read(Some(winner))),
        ];
        assert_linearizable(&history);
    }
}

#[test]
fn a_read_concurrent_with_a_put_may_see_either_value() {
    for seen in [None, Some("a")] {
        let history = vec![
            done(0, put("k", "a"), (0, 10), Outcome::Put),
            done(1, get("k"), (5, 7), read(seen)),
        ];
        assert_linearizable(&history);
    }
}

#[test]
fn reads_cannot_flip_flop_between_concurrent_puts() {
    // Once a read returned "b" after both puts completed, a later read cannot return "a".
    let history = vec![
        done(0, put("k", "a"), (0, 10), Outcome::Put),
        done(1, put("k", "b"), (1, 11), Outcome::Put),
        done(2, get("k"), (20, 30), read(Some("b"))),
        done(2, get("k"), (40, 50), read(Some("a"))),
    ];
    assert_violation_on(&history, "k");
}

#[test]
fn stale_read_after_a_completed_write_is_a_violation() {
    let history = vec![
        done(0, put("config", "v1"), (0, 10), Outcome::Put),
        done(0, put("config", "v2"), (20, 30), Outcome::Put),
        done(1, get("config"), (40, 50), read(Some("v1"))),
    ];
    let explanation = assert_violation_on(&history, "config");
    assert!(explanation.contains("\"config\""), "{explanation}");
    assert!(
        explanation.contains("it read \"v1\" but the value was \"v2\""),
        "{explanation}"
    );
    // The whole history is the shortest failing prefix; the explanation names its end.
    assert!(explanation.contains("t=50 ns"), "{explanation}");
}

#[test]
fn the_explanation_names_the_shortest_failing_prefix() {
    let mut history = vec![
        done(0, put("k", "v1"), (0, 10), Outcome::Put),
        done(1, get("k"), (20, 30), read(Some("v0"))), // never written: fails here
    ];
    for slot in 1..50 {
        history.push(done(
            0,
            get("k"),
            (100 * slot, 100 * slot + 10),
            read(Some("v1")),
        ));
    }
    let explanation = assert_violation_on(&history, "k");
    assert!(explanation.contains("ends at t=30 ns"), "{explanation}");
    assert!(explanation.contains("its 2 operations"), "{explanation}");
}

#[test]
fn read_of_a_value_never_written_is_a_violation() {
    let history = vec![
        done(0, put("k", "a"), (0, 10), Outcome::Put),
        done(1, put("k", "b"), (5, 15), Outcome::Put),
        done(2, get("k"), (3, 20), read(Some("c"))),
    ];
    let explanation = assert_violation_on(&history, "k");
    assert!(explanation.contains("it read \"c\""), "{explanation}");
}

#[test]
fn lost_update_with_cas_is_a_violation() {
    let history = vec![
        done(0, put("counter", "0"), (0, 10), Outcome::Put),
        done(
            1,
            cas("counter", Some("0"), "1"),
            (20, 40),
            Outcome::Cas { succeeded: true },
        ),
        done(
            2,
            cas("counter", Some("0"), "1"),
            (21, 41),
            Outcome::Cas { succeeded: true },
        ),
    ];
    let explanation = assert_violation_on(&history, "counter");
    assert!(explanation.contains("it succeeded but"), "{explanation}");
}

#[test]
fn concurrent_cas_where_one_fails_is_linearizable() {
    let history = vec![
        done(0, put("counter", "0"), (0, 10), Outcome::Put),
        done(
            1,
            cas("counter", Some("0"), "1"),
            (20, 40),
            Outcome::Cas { succeeded: true },
        ),
        done(
            2,
            cas("counter", Some("0"), "1"),
            (21, 41),
            Outcome::Cas { succeeded: false },
        ),
        done(0, get("counter"), (50, 60), read(Some("1"))),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_put_assumed_applied_explains_a_later_read() {
    let history = vec![
        done(0, put("k", "v1"), (0, 10), Outcome::Put),
        lost(1, put("k", "v2"), 20),
        done(2, get("k"), (30, 40), read(Some("v1"))),
        done(2, get("k"), (50, 60), read(Some("v2"))),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_put_that_never_happened_is_dropped() {
    let history = vec![
        done(0, put("k", "v1"), (0, 10), Outcome::Put),
        lost(1, put("k", "v2"), 20),
        done(2, get("k"), (30, 40), read(Some("v1"))),
        done(2, get("k"), (50, 60), read(Some("v1"))),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_outcome_with_a_completion_time_is_still_unknown() {
    let history = vec![
        done(0, put("k", "v1"), (0, 10), Outcome::Put),
        done(1, put("k", "v2"), (20, 25), Outcome::Unknown),
        done(2, get("k"), (30, 40), read(Some("v1"))),
        done(2, get("k"), (50, 60), read(Some("v2"))),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_put_cannot_be_undone() {
    // Seen applied, then seen not applied: no single instant explains both reads.
    let history = vec![
        done(0, put("k", "v1"), (0, 10), Outcome::Put),
        lost(1, put("k", "v2"), 20),
        done(2, get("k"), (30, 40), read(Some("v2"))),
        done(2, get("k"), (50, 60), read(Some("v1"))),
    ];
    assert_violation_on(&history, "k");
}

#[test]
fn unknown_put_cannot_take_effect_before_its_invocation() {
    let history = vec![
        done(0, get("k"), (0, 10), read(Some("v"))),
        lost(1, put("k", "v"), 20),
    ];
    assert_violation_on(&history, "k");
}

#[test]
fn unknown_get_constrains_nothing() {
    let history = vec![
        done(0, put("k", "v1"), (0, 10), Outcome::Put),
        done(1, get("k"), (20, 30), Outcome::Unknown),
        lost(1, get("k"), 40),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_cas_applies_only_if_its_comparison_holds() {
    let expected_absent = vec![
        done(0, put("k", "a"), (0, 10), Outcome::Put),
        lost(1, cas("k", None, "b"), 20),
        done(2, get("k"), (30, 40), read(Some("b"))),
    ];
    assert_violation_on(&expected_absent, "k");
    let expected_a = vec![
        done(0, put("k", "a"), (0, 10), Outcome::Put),
        lost(1, cas("k", Some("a"), "b"), 20),
        done(2, get("k"), (30, 40), read(Some("b"))),
    ];
    assert_linearizable(&expected_a);
}

#[test]
fn delete_reports_whether_the_key_existed() {
    assert_linearizable(&sequential(vec![
        (delete("k"), Outcome::Delete { deleted: false }),
        (put("k", "a"), Outcome::Put),
        (delete("k"), Outcome::Delete { deleted: true }),
        (get("k"), read(None)),
        (delete("k"), Outcome::Delete { deleted: false }),
    ]));
    let deleted_absent = sequential(vec![(delete("k"), Outcome::Delete { deleted: true })]);
    let explanation = assert_violation_on(&deleted_absent, "k");
    assert!(explanation.contains("the key was absent"), "{explanation}");
    let kept_present = sequential(vec![
        (put("k", "a"), Outcome::Put),
        (delete("k"), Outcome::Delete { deleted: false }),
    ]);
    assert_violation_on(&kept_present, "k");
    let read_after_delete = sequential(vec![
        (put("k", "a"), Outcome::Put),
        (delete("k"), Outcome::Delete { deleted: true }),
        (get("k"), read(Some("a"))),
    ]);
    assert_violation_on(&read_after_delete, "k");
}

#[test]
fn two_concurrent_deletes_cannot_both_delete() {
    let history = vec![
        done(0, put("k", "a"), (0, 10), Outcome::Put),
        done(1, delete("k"), (20, 30), Outcome::Delete { deleted: true }),
        done(2, delete("k"), (21, 31), Outcome::Delete { deleted: true }),
    ];
    assert_violation_on(&history, "k");
}

#[test]
fn keys_are_checked_independently() {
    // Real-time order across keys does not matter: each key is a separate object.
    let history = vec![
        done(0, put("a", "1"), (0, 10), Outcome::Put),
        done(1, put("b", "1"), (0, 10), Outcome::Put),
        done(0, get("a"), (20, 30), read(Some("1"))),
        done(1, get("b"), (20, 30), read(None)), // stale on b
        done(0, get("c"), (20, 30), read(None)),
    ];
    let explanation = assert_violation_on(&history, "b");
    assert!(explanation.contains("\"b\""), "{explanation}");
    assert_linearizable(&history[..3]);
}

#[test]
fn malformed_events_are_reported() {
    let wrong_outcome = vec![done(0, get("k"), (0, 10), Outcome::Put)];
    let explanation = assert_violation_on(&wrong_outcome, "k");
    assert!(
        explanation.starts_with("malformed history"),
        "{explanation}"
    );
    let backwards = vec![done(0, put("k", "a"), (10, 5), Outcome::Put)];
    let explanation = assert_violation_on(&backwards, "k");
    assert!(
        explanation.starts_with("malformed history"),
        "{explanation}"
    );
}

#[test]
fn operations_at_equal_timestamps_count_as_concurrent() {
    let history = vec![
        done(0, put("k", "a"), (0, 10), Outcome::Put),
        done(1, get("k"), (10, 20), read(None)),
    ];
    assert_linearizable(&history);
}

#[test]
fn a_spent_budget_is_inconclusive() {
    let history = random_history(&Shape {
        seed: 7,
        ops: 2000,
        keys: 1,
        clients: 4,
        lost_per_mille: 0,
    });
    assert_eq!(
        check(&history, Duration::ZERO),
        Verdict::Inconclusive {
            key: "k0".to_owned()
        }
    );
}

// ------------------------------------------------------------------ the recorder

#[test]
fn history_records_concurrent_clients() {
    let history = History::new();
    let store: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for client in 0..4 {
            let (history, store) = (&history, &store);
            scope.spawn(move || {
                for round in 0..50 {
                    let key = format!("k{}", round % 3);
                    if round % 2 == 0 {
                        let value = format!("c{client}r{round}");
                        let id = history.begin(client, put(&key, &value));
                        store.lock().unwrap().insert(key, value);
                        history.end(id, Outcome::Put);
                    } else {
                        let id = history.begin(client, get(&key));
                        let seen = store.lock().unwrap().get(&key).cloned();
                        history.end(id, Outcome::Get(seen));
                    }
                }
            });
        }
    });
    // A request that never got its answer.
    history.begin(9, put("k0", "lost"));
    let events = history.events();
    assert_eq!(events.len(), 4 * 50 + 1);
    assert!(events.iter().all(|event| {
        event
            .complete
            .is_none_or(|complete| event.invoke <= complete)
    }));
    assert_eq!(events[200].outcome, Outcome::Unknown);
    assert_linearizable(&events);
}

// ------------------------------------------------------------------ random histories

/// The shape of a random history.
struct Shape {
    seed: u64,
    ops: usize,
    keys: usize,
    clients: usize,
    /// How often (per mille) a request is lost before or after taking effect.
    lost_per_mille: u32,
}

/// Where one simulated client is with its current request.
enum Client {
    Idle,
    /// Sent (event index), not yet applied to the register.
    Sent(usize),
    /// Applied (its linearization point has passed); the response is on its way.
    Applied(usize, Outcome),
}

/// A simulated linearizable store: a map applied atomically at random instants between each
/// request's invocation and response.
struct Simulation {
    rng: StdRng,
    now: u64,
    store: HashMap<String, String>,
    values_written: usize,
    events: Vec<Event>,
}

impl Simulation {
    fn tick(&mut self) -> u64 {
        self.now += self.rng.random_range(1..=3);
        self.now
    }

    fn fresh_value(&mut self) -> String {
        self.values_written += 1;
        format!("v{}", self.values_written)
    }

    fn random_op(&mut self, keys: usize) -> Op {
        let key = format!("k{}", self.rng.random_range(0..keys));
        match self.rng.random_range(0..10) {
            0..4 => get(&key),
            4..7 => put(&key, &self.fresh_value()),
            7 => delete(&key),
            _ => {
                let expected = match self.rng.random_range(0..4) {
                    0 | 1 => self.store.get(&key).cloned(),
                    2 => None,
                    _ => Some(format!(
                        "v{}",
                        self.rng.random_range(0..=self.values_written)
                    )),
                };
                Op::Cas {
                    key,
                    expected,
                    new: self.fresh_value(),
                }
            }
        }
    }

    fn send(&mut self, client: usize, keys: usize) -> usize {
        let op = self.random_op(keys);
        let invoke = self.tick();
        self.events.push(lost(client, op, invoke));
        self.events.len() - 1
    }

    /// Applies the request to the store: its linearization point.
    fn apply(&mut self, event: usize) -> Outcome {
        self.tick();
        match self.events[event].op.clone() {
            Op::Get { key } => Outcome::Get(self.store.get(&key).cloned()),
            Op::Put { key, value } => {
                self.store.insert(key, value);
                Outcome::Put
            }
            Op::Delete { key } => Outcome::Delete {
                deleted: self.store.remove(&key).is_some(),
            },
            Op::Cas { key, expected, new } => {
                let succeeded = self.store.get(&key) == expected.as_ref();
                if succeeded {
                    self.store.insert(key, new);
                }
                Outcome::Cas { succeeded }
            }
        }
    }

    fn answer(&mut self, event: usize, outcome: Outcome) {
        let complete = self.tick();
        let event = &mut self.events[event];
        event.complete = Some(complete);
        event.outcome = outcome;
    }
}

/// A random history of a linearizable store with concurrent clients; some requests are lost
/// (never answered), either before or after they took effect.
fn random_history(shape: &Shape) -> Vec<Event> {
    let mut sim = Simulation {
        rng: StdRng::seed_from_u64(shape.seed),
        now: 0,
        store: HashMap::new(),
        values_written: 0,
        events: Vec::new(),
    };
    let mut clients: Vec<Client> = (0..shape.clients).map(|_| Client::Idle).collect();
    let mut sent = 0;
    while sent < shape.ops || clients.iter().any(|client| !matches!(client, Client::Idle)) {
        let index = sim.rng.random_range(0..shape.clients);
        let lose = sim.rng.random_ratio(shape.lost_per_mille, 1000);
        clients[index] = match std::mem::replace(&mut clients[index], Client::Idle) {
            Client::Idle if sent < shape.ops => {
                sent += 1;
                Client::Sent(sim.send(index, shape.keys))
            }
            Client::Idle => Client::Idle,
            // Lost before taking effect, or after: either way the client never hears back.
            Client::Sent(_) | Client::Applied(..) if lose => Client::Idle,
            Client::Sent(event) => Client::Applied(event, sim.apply(event)),
            Client::Applied(event, outcome) => {
                sim.answer(event, outcome);
                Client::Idle
            }
        };
    }
    sim.events
}

/// Replaces a random answered read's value by one that was never written.
fn corrupt_a_read(events: &mut [Event], seed: u64) -> String {
    let reads: Vec<usize> = (0..events.len())
        .filter(|&index| matches!(events[index].outcome, Outcome::Get(_)))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let victim = &mut events[reads[rng.random_range(0..reads.len())]];
    victim.outcome = read(Some("never-written"));
    victim.op.key().to_owned()
}

fn seeds() -> std::ops::Range<u64> {
    0..50
}

fn shape(seed: u64) -> Shape {
    Shape {
        seed,
        ops: 300,
        keys: 3,
        clients: 5,
        lost_per_mille: 20,
    }
}

#[test]
fn random_linearizable_histories_are_accepted() {
    for seed in seeds() {
        let history = random_history(&shape(seed));
        let verdict = check(&history, BUDGET);
        assert!(verdict.is_linearizable(), "seed {seed}: {verdict}");
    }
}

#[test]
fn random_histories_with_a_corrupted_read_are_rejected() {
    for seed in seeds() {
        let mut history = random_history(&shape(seed));
        let key = corrupt_a_read(&mut history, seed);
        match check(&history, BUDGET) {
            Verdict::Violation {
                key: violated,
                explanation,
            } => {
                assert_eq!(violated, key, "seed {seed}:\n{explanation}");
                assert!(
                    explanation.contains("\"never-written\""),
                    "seed {seed}:\n{explanation}"
                );
            }
            other => panic!("seed {seed}: expected a violation on {key:?}, got {other}"),
        }
    }
}

#[test]
fn two_thousand_operations_on_one_key_are_decided() {
    let history = random_history(&Shape {
        seed: 2000,
        ops: 2000,
        keys: 1,
        clients: 4,
        lost_per_mille: 5,
    });
    let started = Instant::now();
    let verdict = check(&history, BUDGET);
    eprintln!(
        "2000 operations on one key checked in {:?}",
        started.elapsed()
    );
    assert_eq!(verdict, Verdict::Linearizable, "{verdict}");
}

// ------------------------------------------------------------------ brute force

/// An outcome that cannot happen in the state it is tried in.
struct Impossible;

/// The model, written out again as plainly as possible: the value after `op` with `outcome`
/// (`None`: unknown), or [`Impossible`].
fn brute_force_step(
    op: &Op,
    outcome: Option<&Outcome>,
    value: Option<&String>,
) -> Result<Option<String>, Impossible> {
    let value = value.cloned();
    let (after, possible) = match (op, outcome) {
        (Op::Get { .. }, None) => (value.clone(), true),
        (Op::Get { .. }, Some(Outcome::Get(seen))) => (value.clone(), *seen == value),
        (Op::Put { value: new, .. }, _) => (Some(new.clone()), true),
        (Op::Delete { .. }, None) => (None, true),
        (Op::Delete { .. }, Some(Outcome::Delete { deleted })) => {
            (None, *deleted == value.is_some())
        }
        (Op::Cas { expected, new, .. }, outcome) => {
            let holds = *expected == value;
            let possible =
                !matches!(outcome, Some(Outcome::Cas { succeeded }) if *succeeded != holds);
            let after = if holds {
                Some(new.clone())
            } else {
                value.clone()
            };
            (after, possible)
        }
        _ => panic!("malformed event in a generated history"),
    };
    if possible { Ok(after) } else { Err(Impossible) }
}

/// Tries every order of the operations that respects real time (an operation that responded
/// before another was invoked goes first), with each unknown operation placed or left out.
fn brute_force_linearizable(events: &[Event]) -> bool {
    fn response(event: &Event) -> Option<u64> {
        event.complete.filter(|_| event.outcome != Outcome::Unknown)
    }
    fn extend(events: &[Event], placed: &mut [bool], value: Option<&String>) -> bool {
        let definite_left = (0..events.len()).any(|i| !placed[i] && response(&events[i]).is_some());
        if !definite_left {
            return true;
        }
        for next in 0..events.len() {
            let must_wait = (0..events.len()).any(|other| {
                !placed[other]
                    && other != next
                    && response(&events[other]).is_some_and(|at| at < events[next].invoke)
            });
            if placed[next] || must_wait {
                continue;
            }
            let event = &events[next];
            let outcome = response(event).map(|_| &event.outcome);
            if let Ok(after) = brute_force_step(&event.op, outcome, value) {
                placed[next] = true;
                let found = extend(events, placed, after.as_ref());
                placed[next] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    extend(events, &mut vec![false; events.len()], None)
}

/// Flips one outcome of a random history (which may or may not break linearizability).
fn tamper(events: &mut [Event], rng: &mut StdRng) {
    let event = rng.random_range(0..events.len());
    match &mut events[event].outcome {
        Outcome::Cas { succeeded } => *succeeded = !*succeeded,
        Outcome::Delete { deleted } => *deleted = !*deleted,
        Outcome::Get(seen) => *seen = Some(format!("v{}", rng.random_range(1..6))),
        Outcome::Put | Outcome::Unknown => {}
    }
}

#[test]
fn small_random_histories_agree_with_brute_force() {
    let mut verdicts = [0, 0];
    for seed in 0..1500 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut history = random_history(&Shape {
            seed,
            ops: rng.random_range(3..10),
            keys: 1,
            clients: rng.random_range(2..5),
            lost_per_mille: rng.random_range(0..400),
        });
        if rng.random_bool(0.5) {
            tamper(&mut history, &mut rng);
        }
        let expected = brute_force_linearizable(&history);
        verdicts[usize::from(expected)] += 1;
        match check(&history, BUDGET) {
            Verdict::Linearizable if expected => {}
            Verdict::Violation { .. } if !expected => {}
            other => panic!(
                "seed {seed}: brute force says linearizable={expected}, checker: {other}\n\
                 history: {history:#?}"
            ),
        }
    }
    // Both verdicts were exercised.
    assert!(verdicts.iter().all(|&count| count > 100), "{verdicts:?}");
}
