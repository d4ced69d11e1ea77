//! A linearizability checker for histories of key-value operations.
//!
//! # What it decides
//!
//! A concurrent history records, for every operation a client issued, when it was invoked,
//! when its response arrived and what the response said. The history is *linearizable* when
//! every operation can be given one instant between its invocation and its response at which
//! it took effect, such that applying the operations one at a time in that order to a plain
//! key-value map gives back exactly the responses the clients saw. That is the guarantee etcd
//! makes for its (non-serializable) KV API.
//!
//! # The model
//!
//! Every operation touches exactly one key, and each key is an independent register holding an
//! `Option<String>` (`None` = absent). Every key starts absent, so a test should use fresh
//! keys (or record the operation that first wrote them).
//!
//! - [`Op::Get`] must return the current value and changes nothing.
//! - [`Op::Put`] sets the value.
//! - [`Op::Delete`] clears it; `deleted` says whether the key existed.
//! - [`Op::Cas`] (an etcd `Txn` comparing the value, or its absence) puts the new value if
//!   the current one equals `expected`, and otherwise does nothing; `succeeded` says which.
//!
//! An operation whose outcome is [`Outcome::Unknown`] (a timeout, a lost connection), or whose
//! response never arrived, may have taken effect at any instant after its invocation, or never:
//! its response time is taken to be +infinity and its result is not checked (its effect on the
//! value still follows the model: an unknown `Cas` applies only if its comparison holds). A
//! `Get` with an unknown outcome constrains nothing and is dropped.
//!
//! # The search
//!
//! 1. *Locality* (Herlihy & Wing's P-compositionality): a history is linearizable if and only if
//!    its sub-history on every key is, because no operation touches two keys. The history is
//!    partitioned by key and every key is checked on its own, which keeps each search small.
//! 2. *Wing & Gong's search.* The invocation ("call") and response ("return") entries of a
//!    key's operations with a known outcome form one doubly linked list sorted by time.
//!    Scanning from the front, a call entry met before any return entry belongs to an
//!    operation that could take effect next: every operation that responded before this one
//!    was invoked has already been placed. If the model accepts it in the current state, it is
//!    linearized: both of its entries are lifted out of the list, it is pushed on a stack along
//!    with the state before it, and the scan restarts from the front. Reaching a return entry
//!    is a dead end: that operation responded, yet nothing placed so far lets it take effect.
//!    The search then pops the last placed operation, restores the state, puts its entries
//!    back and continues the scan after its call entry. A dead end with an empty stack means
//!    there is no linearization.
//! 3. *Lowe's memoization.* What can happen next depends only on which operations have been
//!    linearized and on the current value, so every (set of linearized operations, value) pair
//!    is explored at most once. The set is a bitset (`Vec<u64>`) whose hash is kept up to date
//!    incrementally (Zobrist hashing: the XOR of a fixed pseudo-random word per linearized
//!    operation). Values are interned to small integers, so a state is a `u32`.
//! 4. *Unknown operations* have no return entry: they are kept aside, in invocation order, and
//!    at each step the ones invoked before the first return entry of the list are tried before
//!    the call entries. The search succeeds as soon as every operation with a known outcome is
//!    linearized; the unknown operations left over are the ones that never took effect. Two
//!    reductions, both exact, keep unknown operations from multiplying the configurations (see
//!    `Search` and `Explored` for why they lose nothing): the search only builds
//!    linearizations in which a run of unknown operations is immediately followed by a known
//!    operation it makes legal, and a configuration is skipped when one with the same known
//!    operations and value but fewer unknown operations applied was explored. Still, proving a
//!    violation means exhausting every configuration before it, and many unknown operations
//!    scattered over one key's history (rather than a few around a crash) can make that slow;
//!    the budget then turns it into [`Verdict::Inconclusive`].
//!
//! When timestamps are equal, calls sort before returns, so an operation invoked at the very
//! nanosecond another one responded counts as concurrent with it (the checker errs towards
//! accepting).
//!
//! # Explaining a violation
//!
//! When a key has no linearization, the checker looks for the shortest failing prefix of that
//! key's history by binary search over response times. A prefix of a linearizable history is
//! linearizable (operations still in flight at the cut count as unknown), so failure is
//! monotone in the cut. Within the shortest failing prefix it reports the longest partial
//! linearization the search found, the value at that point, the operation that responded before
//! it could take effect, and why each candidate operation could not go next.
//!
//! # Budget
//!
//! The search is exponential in the worst case. [`check`] looks at the clock every thousand steps
//! or so and gives up with [`Verdict::Inconclusive`] once its time budget is spent, or once the
//! memo holds more than [`MAX_EXPLORED_WORDS`] words of bitsets.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One key-value operation as a client issued it. Every operation touches exactly one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read the value of `key`.
    Get { key: String },
    /// Set the value of `key`.
    Put { key: String, value: String },
    /// Remove `key`.
    Delete { key: String },
    /// etcd Txn: if value(key) == expected (None = key absent) then put new, else nothing.
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl Op {
    /// The key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }
}

/// What a client saw in response to an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The value a `Get` returned (`None` = key absent).
    Get(Option<String>),
    /// A `Put` was acknowledged.
    Put,
    /// A `Delete` was acknowledged; `deleted` says whether the key existed.
    Delete { deleted: bool },
    /// A `Cas` ran; `succeeded` says whether the comparison held and the put was applied.
    Cas { succeeded: bool },
    /// timed out / connection lost: the op may or may not have taken effect.
    Unknown,
}

/// One operation of a history: who issued it, when, and what came back.
///
/// Times are nanoseconds since an origin shared by every event of the history; [`History`]
/// uses the instant it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The client that issued the operation (only used in explanations).
    pub client: usize,
    /// The operation.
    pub op: Op,
    /// When the request was about to be sent (no later than that).
    pub invoke: u64,
    /// When the response arrived (no earlier than that); `None` if it never did, in which case
    /// the outcome counts as [`Outcome::Unknown`] whatever `outcome` says.
    pub complete: Option<u64>,
    /// What the response said.
    pub outcome: Outcome,
}

/// An operation begun with [`History::begin`], to be finished with [`History::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpId(usize);

/// A thread-safe recorder of a concurrent history.
///
/// Call [`History::begin`] right before sending a request and [`History::end`] right after its
/// response (or error) arrived. An operation begun but never ended stays in the history with an
/// unknown outcome, which is exactly what it is.
#[derive(Debug)]
pub struct History {
    origin: Instant,
    events: Mutex<Vec<Event>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history whose time origin is now.
    pub fn new() -> Self {
        History {
            origin: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since this history was created: the time base of its events.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that `client` is about to send `op`; the outcome is unknown until [`History::end`].
    pub fn begin(&self, client: usize, op: Op) -> OpId {
        let invoke = self.now();
        let mut events = self.lock();
        events.push(Event {
            client,
            op,
            invoke,
            complete: None,
            outcome: Outcome::Unknown,
        });
        OpId(events.len() - 1)
    }

    /// Records the response to an operation begun with [`History::begin`]. Pass
    /// [`Outcome::Unknown`] for a timeout or a lost connection.
    ///
    /// # Panics
    ///
    /// If `id` comes from another history or the operation was already ended.
    pub fn end(&self, id: OpId, outcome: Outcome) {
        let complete = self.now();
        let mut events = self.lock();
        let event = events
            .get_mut(id.0)
            .expect("an OpId from this history's begin()");
        assert!(
            event.complete.is_none(),
            "operation {id:?} ended twice: {event:?}"
        );
        event.complete = Some(complete);
        event.outcome = outcome;
    }

    /// Records a whole event at once (its times must use [`History::now`]'s time base).
    pub fn record(&self, event: Event) {
        self.lock().push(event);
    }

    /// Every event recorded so far, in the order they were begun or recorded.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        // A panicking recorder thread leaves the events intact: keep using them.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// `key`'s history has no linearization (or an event is malformed, which the explanation
    /// says). The explanation names the shortest failing prefix and the operations involved.
    Violation { key: String, explanation: String },
    /// The search on `key` ran out of budget before reaching a verdict (and no other key had a
    /// violation).
    Inconclusive { key: String },
}

impl Verdict {
    /// Whether this is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        *self == Verdict::Linearizable
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::Violation { key, explanation } => {
                write!(f, "not linearizable on key {key:?}:\n{explanation}")
            }
            Verdict::Inconclusive { key } => write!(
                f,
                "inconclusive: the search on key {key:?} ran out of budget"
            ),
        }
    }
}

/// Checks whether `events` (in any order) form a linearizable history of the key-value model
/// described in the module documentation, spending at most about `budget` on the search.
///
/// A violation on any key wins over an inconclusive search on another. Malformed events (a
/// response before the invocation, an outcome of the wrong kind) are reported as a violation
/// whose explanation starts with "malformed history".
pub fn check(events: &[Event], budget: Duration) -> Verdict {
    let deadline = Instant::now().checked_add(budget);
    if let Some(malformed) = find_malformed(events) {
        return malformed;
    }
    let mut inconclusive = None;
    for (key, indices) in partition_by_key(events) {
        match check_key(events, &indices, deadline) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation(explanation) => {
                return Verdict::Violation {
                    key: key.to_owned(),
                    explanation,
                };
            }
            KeyVerdict::Inconclusive => {
                inconclusive.get_or_insert(key);
            }
        }
    }
    inconclusive.map_or(Verdict::Linearizable, |key| Verdict::Inconclusive {
        key: key.to_owned(),
    })
}

/// The search gives up once the memo of explored configurations holds this many 64-bit words
/// of bitsets (256 MiB).
pub const MAX_EXPLORED_WORDS: usize = 1 << 25;

/// How many search steps go by between two looks at the clock.
const STEPS_BETWEEN_BUDGET_CHECKS: u32 = 1024;

// ------------------------------------------------------------------ validation and partition

fn find_malformed(events: &[Event]) -> Option<Verdict> {
    events.iter().enumerate().find_map(|(index, event)| {
        let why = malformation(event)?;
        Some(Verdict::Violation {
            key: event.op.key().to_owned(),
            explanation: format!(
                "malformed history: event #{index} ({}): {why}",
                describe_event(event, event.complete)
            ),
        })
    })
}

fn malformation(event: &Event) -> Option<&'static str> {
    if event
        .complete
        .is_some_and(|complete| complete < event.invoke)
    {
        return Some("its response came before its invocation");
    }
    let outcome_fits = matches!(
        (&event.op, &event.outcome),
        (_, Outcome::Unknown)
            | (Op::Get { .. }, Outcome::Get(_))
            | (Op::Put { .. }, Outcome::Put)
            | (Op::Delete { .. }, Outcome::Delete { .. })
            | (Op::Cas { .. }, Outcome::Cas { .. })
    );
    (!outcome_fits).then_some("its outcome is not one this kind of operation can have")
}

/// The indices of the events on each key, keys in order (so verdicts are deterministic).
fn partition_by_key(events: &[Event]) -> BTreeMap<&str, Vec<usize>> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        by_key.entry(event.op.key()).or_default().push(index);
    }
    by_key
}

// ------------------------------------------------------------------ one key

enum KeyVerdict {
    Linearizable,
    Violation(String),
    Inconclusive,
}

fn check_key(events: &[Event], indices: &[usize], deadline: Option<Instant>) -> KeyVerdict {
    let history = KeyHistory::compile(events, indices, None);
    match Search::new(&history).run(deadline) {
        SearchResult::Linearizable => KeyVerdict::Linearizable,
        SearchResult::Inconclusive => KeyVerdict::Inconclusive,
        SearchResult::NoLinearization(dead_end) => {
            let (prefix, dead_end) =
                shortest_failing_prefix(events, indices, history, dead_end, deadline);
            KeyVerdict::Violation(explain(events, &prefix, &dead_end))
        }
    }
}

/// Binary search for the earliest response time `t` such that the key's history cut at `t`
/// (operations invoked by `t`; responses after `t` count as unknown) has no linearization.
/// Falls back to the longest failing cut found if the budget runs out.
fn shortest_failing_prefix<'e>(
    events: &'e [Event],
    indices: &[usize],
    full: KeyHistory<'e>,
    full_dead_end: DeadEnd,
    deadline: Option<Instant>,
) -> (KeyHistory<'e>, DeadEnd) {
    let mut cuts: Vec<u64> = full.ops.iter().filter_map(|op| op.response).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut best = (full, full_dead_end);
    // The shortest failing cut is cuts[i] for some i in lo..=hi (hi == len: the whole history).
    let (mut lo, mut hi) = (0, cuts.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let prefix = KeyHistory::compile(events, indices, Some(cuts[mid]));
        match Search::new(&prefix).run(deadline) {
            SearchResult::NoLinearization(dead_end) => {
                best = (prefix, dead_end);
                hi = mid;
            }
            SearchResult::Linearizable => lo = mid + 1,
            SearchResult::Inconclusive => break,
        }
    }
    best
}

/// A model state: an interned value; [`ABSENT`] is the absent key.
type State = u32;

const ABSENT: State = 0;

/// What one operation does to the value, and what it must have seen.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A `Get` that returned `seen`.
    Read { seen: State },
    /// A `Put`, acknowledged or not (its effect is the same).
    Write { value: State },
    /// A `Delete`; `deleted` is `None` when the outcome is unknown.
    Delete { deleted: Option<bool> },
    /// A `Cas`; `succeeded` is `None` when the outcome is unknown.
    Cas {
        expected: State,
        new: State,
        succeeded: Option<bool>,
    },
}

impl Step {
    /// The state after this step, or `None` if its recorded outcome is impossible in `state`.
    fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Read { seen } => (seen == state).then_some(state),
            Step::Write { value } => Some(value),
            Step::Delete { deleted } => {
                let existed = state != ABSENT;
                (deleted != Some(!existed)).then_some(ABSENT)
            }
            Step::Cas {
                expected,
                new,
                succeeded,
            } => {
                let holds = state == expected;
                (succeeded != Some(!holds)).then_some(if holds { new } else { state })
            }
        }
    }
}

/// One operation of a key's history, ready for the search.
#[derive(Clone, Copy, Debug)]
struct KeyOp {
    /// Index into the events given to [`check`].
    event: usize,
    invoke: u64,
    /// `None`: unknown outcome, may take effect any time after `invoke`, or never.
    response: Option<u64>,
    step: Step,
}

/// The operations on one key, optionally cut at a time, with their values interned.
struct KeyHistory<'e> {
    ops: Vec<KeyOp>,
    /// `values[s - 1]` is the value of state `s` (state [`ABSENT`] has none).
    values: Vec<&'e str>,
    cut: Option<u64>,
}

impl<'e> KeyHistory<'e> {
    /// The events at `indices` (all on one key, validated) as search operations. With a `cut`,
    /// events invoked after it are left out and responses after it count as unknown.
    fn compile(events: &'e [Event], indices: &[usize], cut: Option<u64>) -> Self {
        let mut interner = Interner::default();
        let mut ops = Vec::with_capacity(indices.len());
        for &index in indices {
            let event = &events[index];
            if cut.is_some_and(|cut| event.invoke > cut) {
                continue;
            }
            let response = event.complete.filter(|&complete| {
                event.outcome != Outcome::Unknown && cut.is_none_or(|cut| complete <= cut)
            });
            let outcome = response.map(|_| &event.outcome);
            if let Some(step) = step_of(&event.op, outcome, &mut interner) {
                ops.push(KeyOp {
                    event: index,
                    invoke: event.invoke,
                    response,
                    step,
                });
            }
        }
        KeyHistory {
            ops,
            values: interner.values,
            cut,
        }
    }

    fn value_text(&self, state: State) -> String {
        match state.checked_sub(1) {
            None => "absent".to_owned(),
            Some(index) => format!("{:?}", self.values[index as usize]),
        }
    }
}

/// The step an operation takes given its outcome (`None`: unknown); `None` for an unknown
/// `Get`, which constrains nothing.
fn step_of<'e>(
    op: &'e Op,
    outcome: Option<&'e Outcome>,
    values: &mut Interner<'e>,
) -> Option<Step> {
    let step = match (op, outcome) {
        (Op::Get { .. }, None) => return None,
        (Op::Get { .. }, Some(Outcome::Get(seen))) => Step::Read {
            seen: values.state_of(seen.as_deref()),
        },
        (Op::Put { value, .. }, _) => Step::Write {
            value: values.state_of(Some(value)),
        },
        (Op::Delete { .. }, None) => Step::Delete { deleted: None },
        (Op::Delete { .. }, Some(Outcome::Delete { deleted })) => Step::Delete {
            deleted: Some(*deleted),
        },
        (Op::Cas { expected, new, .. }, None | Some(Outcome::Cas { .. })) => Step::Cas {
            expected: values.state_of(expected.as_deref()),
            new: values.state_of(Some(new)),
            succeeded: match outcome {
                Some(Outcome::Cas { succeeded }) => Some(*succeeded),
                _ => None,
            },
        },
        _ => unreachable!("outcomes are validated before the search"),
    };
    Some(step)
}

/// Maps values to small integer states.
#[derive(Default)]
struct Interner<'e> {
    states: HashMap<&'e str, State>,
    values: Vec<&'e str>,
}

impl<'e> Interner<'e> {
    fn state_of(&mut self, value: Option<&'e str>) -> State {
        let Some(value) = value else {
            return ABSENT;
        };
        *self.states.entry(value).or_insert_with(|| {
            self.values.push(value);
            State::try_from(self.values.len()).expect("fewer than 2^32 distinct values")
        })
    }
}

// ------------------------------------------------------------------ the search

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The call entry of the definite operation in `slot`, in the [`EntryList`].
fn call_node(slot: usize) -> usize {
    1 + 2 * slot
}

/// The return entry of the definite operation in `slot`, in the [`EntryList`].
fn return_node(slot: usize) -> usize {
    2 + 2 * slot
}

fn slot_of(node: usize) -> usize {
    (node - 1) / 2
}

fn is_call(node: usize) -> bool {
    node % 2 == 1
}

/// The call and return entries of the definite operations, in time order, as a doubly linked
/// list over node numbers (node [`HEAD`] is a sentinel), so that an operation's two entries can
/// be lifted out and put back in O(1).
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl EntryList {
    /// `times[slot]` = (invocation, response) of the definite operation in `slot`.
    fn new(times: &[(u64, u64)]) -> Self {
        // Sort key: time, then calls (0) before returns (1), so equal times overlap.
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * times.len());
        for (slot, &(invoke, response)) in times.iter().enumerate() {
            order.push((invoke, 0, call_node(slot)));
            order.push((response, 1, return_node(slot)));
        }
        order.sort_unstable();
        let nodes = 1 + 2 * times.len();
        let mut list = EntryList {
            next: vec![NIL; nodes],
            prev: vec![NIL; nodes],
        };
        let mut last = HEAD;
        for &(_, _, node) in &order {
            list.next[last] = node;
            list.prev[node] = last;
            last = node;
        }
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    fn lift(&mut self, slot: usize) {
        self.unlink(call_node(slot));
        self.unlink(return_node(slot));
    }

    /// Undoes [`EntryList::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, slot: usize) {
        self.relink(return_node(slot));
        self.relink(call_node(slot));
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Puts back the node unlinked last, using the neighbours it still points to.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }
}

/// A 64-bit mix (`SplitMix64`'s finalizer): the fixed pseudo-random word of an operation or a
/// state.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The linearized operations: a bitset over definite slots followed by one over unknown slots,
/// with the Zobrist hash of the definite part.
struct LinearizedSet {
    words: Vec<u64>,
    /// Where the unknown slots' words start.
    unknown_start: usize,
    definite_hash: u64,
}

impl LinearizedSet {
    fn new(definite: usize, unknown: usize) -> Self {
        let unknown_start = definite.div_ceil(64);
        LinearizedSet {
            words: vec![0; unknown_start + unknown.div_ceil(64)],
            unknown_start,
            definite_hash: 0,
        }
    }

    fn bit(&self, choice: Choice) -> (usize, u64) {
        let index = match choice {
            Choice::Definite(slot) => slot,
            Choice::Unknown { slot, .. } => self.unknown_start * 64 + slot,
        };
        (index / 64, 1 << (index % 64))
    }

    fn contains(&self, choice: Choice) -> bool {
        let (word, bit) = self.bit(choice);
        self.words[word] & bit != 0
    }

    /// Adds or removes `choice`.
    fn toggle(&mut self, choice: Choice) {
        let (word, bit) = self.bit(choice);
        self.words[word] ^= bit;
        if let Choice::Definite(slot) = choice {
            self.definite_hash ^= mix(slot as u64);
        }
    }
}

/// A [`Hasher`] for keys that are already good hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Keeps a state's word apart from the operations' words in a configuration's hash.
const STATE_SALT: u64 = 0xA5A5_A5A5_A5A5_A5A5;

/// An explored configuration: the linearized set's words, the state, and the start of the
/// trailing run of unknown operations (see [`Search`]).
struct Configuration {
    words: Box<[u64]>,
    state: State,
    run_start: Option<State>,
}

/// Lowe's memo: the configurations explored so far, bucketed by the hash of their definite
/// part and state.
///
/// Lowe's memo skips a configuration explored before. This one also skips a configuration
/// *dominated* by an explored one: same definite operations and state, a superset of its
/// unknown operations, and the same trailing-run start or the explored one has none. Whatever
/// can still happen from the dominated configuration can also happen from the explored one:
/// the extra unknown operations can always be left out, no operation waits for an unknown
/// one, and without a trailing run nothing is ruled out next.
#[derive(Default)]
struct Explored {
    buckets: HashMap<u64, Vec<Configuration>, BuildHasherDefault<Prehashed>>,
    words: usize,
}

impl Explored {
    /// Records a configuration; `false` if it is dominated by one explored already.
    fn insert(
        &mut self,
        linearized: &LinearizedSet,
        state: State,
        run_start: Option<State>,
    ) -> bool {
        let hash = linearized.definite_hash ^ mix(u64::from(state) ^ STATE_SALT);
        let bucket = self.buckets.entry(hash).or_default();
        let (definite, unknown) = linearized.words.split_at(linearized.unknown_start);
        let dominated = bucket.iter().any(|explored| {
            let (explored_definite, explored_unknown) =
                explored.words.split_at(linearized.unknown_start);
            explored.state == state
                && explored_definite == definite
                && is_subset(explored_unknown, unknown)
                && (explored.run_start.is_none() || explored.run_start == run_start)
        });
        if !dominated {
            bucket.push(Configuration {
                words: linearized.words.clone().into_boxed_slice(),
                state,
                run_start,
            });
            self.words += linearized.words.len();
        }
        !dominated
    }
}

fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small
        .iter()
        .zip(large)
        .all(|(small, large)| small & !large == 0)
}

/// An operation the search can linearize next. Definite operations are numbered by slot in
/// [`Search::definite`], unknown ones by slot in [`Search::unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Definite(usize),
    /// An unknown operation, tried because it was invoked before the return entry `blocking`
    /// (the first one in the list then).
    Unknown {
        slot: usize,
        blocking: usize,
    },
}

/// Where the scan for the next operation to linearize stands.
#[derive(Clone, Copy)]
enum Cursor {
    /// At an entry of the list: a call to try, or the first return (a dead end).
    Entry(usize),
    /// Trying unknown operations from `slot` on, invoked no later than the return entry
    /// `blocking` (the first one in the list).
    Unknown { slot: usize, blocking: usize },
}

/// A linearized operation on the search stack.
#[derive(Clone, Copy)]
struct Frame {
    choice: Choice,
    state_before: State,
    run_start_before: Option<State>,
}

/// Where the search got stuck: after linearizing `linearized` (leaving `state`), `blocking`
/// responded although none of `candidates` (the operations that could go next) could.
/// Operations are indices into [`KeyHistory::ops`].
struct DeadEnd {
    linearized: Vec<usize>,
    state: State,
    blocking: usize,
    candidates: Vec<usize>,
}

enum SearchResult {
    Linearizable,
    /// No linearization; the dead end with the longest partial linearization.
    NoLinearization(DeadEnd),
    Inconclusive,
}

/// The search on one key's history.
///
/// Definite operations (known outcome) live in the [`EntryList`]. Unknown operations may take
/// effect any time after their invocation, or never, so they have no return entry; at each
/// step they are tried before the definite candidates, in invocation order, among those
/// invoked before the first return entry (a run of them is only kept if a definite operation
/// needs it next, see below, so trying them first is cheap, and it finds quickly the
/// linearizations in which a lost write did take effect).
///
/// Left at that, unknown operations make the search blow up: an unknown write could have
/// taken effect at any instant, and each choice is a different configuration. So the search
/// only looks for linearizations in a *normal form*, in which every maximal run of unknown
/// operations
/// - is immediately followed by a definite operation that would be illegal in the state
///   before the run (the run is there to make it legal),
/// - has no unknown operation that leaves the value unchanged, and no blind write (`Put`,
///   `Delete`) except as its first operation.
///
/// Every linearization can be rewritten into that form, so nothing is lost: a no-op unknown
/// operation, a run ending the linearization and a run before a blind write can be dropped;
/// so can a run before a definite operation `X` that is legal in the state before the run and
/// leads to the same state either way. The one other way for `X` to be legal in both states
/// is a failed `Cas`, which changes nothing, so the run can move after it. Each rewrite drops
/// an operation or moves one later, so rewriting ends. `run_start` is the state before the
/// trailing run of unknown operations, if the last linearized operation is unknown.
struct Search<'h> {
    ops: &'h [KeyOp],
    /// Operation index of each definite slot.
    definite: Vec<usize>,
    /// Operation index of each unknown slot, in invocation order.
    unknown: Vec<usize>,
    list: EntryList,
    linearized: LinearizedSet,
    explored: Explored,
    stack: Vec<Frame>,
    state: State,
    run_start: Option<State>,
    /// Definite operations not yet linearized; the search succeeds at zero.
    definite_left: usize,
    deepest: Option<DeadEnd>,
}

impl<'h> Search<'h> {
    fn new(history: &'h KeyHistory<'_>) -> Self {
        let ops = &history.ops;
        let (mut definite, mut unknown): (Vec<usize>, Vec<usize>) =
            (0..ops.len()).partition(|&op| ops[op].response.is_some());
        definite.sort_by_key(|&op| ops[op].invoke);
        unknown.sort_by_key(|&op| ops[op].invoke);
        let times: Vec<(u64, u64)> = definite
            .iter()
            .map(|&op| (ops[op].invoke, ops[op].response.unwrap_or(u64::MAX)))
            .collect();
        Search {
            ops,
            list: EntryList::new(&times),
            linearized: LinearizedSet::new(definite.len(), unknown.len()),
            explored: Explored::default(),
            stack: Vec::with_capacity(ops.len()),
            state: ABSENT,
            run_start: None,
            definite_left: definite.len(),
            deepest: None,
            definite,
            unknown,
        }
    }

    fn run(mut self, deadline: Option<Instant>) -> SearchResult {
        let mut cursor = self.first_cursor();
        let mut steps: u32 = 0;
        while self.definite_left > 0 {
            steps = steps.wrapping_add(1);
            if steps.is_multiple_of(STEPS_BETWEEN_BUDGET_CHECKS) && self.out_of_budget(deadline) {
                return SearchResult::Inconclusive;
            }
            cursor = match cursor {
                Cursor::Unknown { slot, blocking } if self.may_try_unknown(slot, blocking) => {
                    let choice = Choice::Unknown { slot, blocking };
                    if !self.linearized.contains(choice) && self.try_linearize(choice) {
                        self.first_cursor()
                    } else {
                        Cursor::Unknown {
                            slot: slot + 1,
                            blocking,
                        }
                    }
                }
                Cursor::Unknown { .. } => Cursor::Entry(self.list.first()),
                // While a definite operation is left, its return entry ends every scan of the
                // list: the entry is never NIL.
                Cursor::Entry(node) if is_call(node) => {
                    if self.try_linearize(Choice::Definite(slot_of(node))) {
                        self.first_cursor()
                    } else {
                        Cursor::Entry(self.list.next(node))
                    }
                }
                Cursor::Entry(blocking) => {
                    self.note_dead_end(blocking);
                    let Some(frame) = self.stack.pop() else {
                        let dead_end = self.deepest.take().expect("a dead end was just noted");
                        return SearchResult::NoLinearization(dead_end);
                    };
                    self.undo(frame);
                    match frame.choice {
                        Choice::Definite(slot) => Cursor::Entry(self.list.next(call_node(slot))),
                        Choice::Unknown { slot, blocking } => Cursor::Unknown {
                            slot: slot + 1,
                            blocking,
                        },
                    }
                }
            };
        }
        SearchResult::Linearizable
    }

    /// Where a scan starts: with the unknown operations, then the definite ones. (With no
    /// definite operation left, `blocking` is NIL, but the search is over then.)
    fn first_cursor(&self) -> Cursor {
        let mut blocking = self.list.first();
        while blocking != NIL && is_call(blocking) {
            blocking = self.list.next(blocking);
        }
        Cursor::Unknown { slot: 0, blocking }
    }

    fn out_of_budget(&self, deadline: Option<Instant>) -> bool {
        self.explored.words > MAX_EXPLORED_WORDS
            || deadline.is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn op(&self, choice: Choice) -> usize {
        match choice {
            Choice::Definite(slot) => self.definite[slot],
            Choice::Unknown { slot, .. } => self.unknown[slot],
        }
    }

    /// Whether unknown `slot` exists and was invoked before the return entry `blocking`.
    fn may_try_unknown(&self, slot: usize, blocking: usize) -> bool {
        let Some(&op) = self.unknown.get(slot) else {
            return false;
        };
        let deadline = self.ops[self.definite[slot_of(blocking)]].response;
        deadline.is_some_and(|response| self.ops[op].invoke <= response)
    }

    /// Linearizes `choice` next if the model and the normal form allow it and the resulting
    /// configuration is new.
    fn try_linearize(&mut self, choice: Choice) -> bool {
        let step = self.ops[self.op(choice)].step;
        let Some(next_state) = step.apply(self.state) else {
            return false;
        };
        if !self.in_normal_form(choice, step, next_state) {
            return false;
        }
        let run_start = match choice {
            Choice::Definite(_) => None,
            Choice::Unknown { .. } => Some(self.run_start.unwrap_or(self.state)),
        };
        self.linearized.toggle(choice);
        if !self
            .explored
            .insert(&self.linearized, next_state, run_start)
        {
            self.linearized.toggle(choice);
            return false;
        }
        self.stack.push(Frame {
            choice,
            state_before: self.state,
            run_start_before: self.run_start,
        });
        self.state = next_state;
        self.run_start = run_start;
        if let Choice::Definite(slot) = choice {
            self.list.lift(slot);
            self.definite_left -= 1;
        }
        true
    }

    /// Whether linearizing `choice` (taking the state to `next_state`) next keeps the
    /// linearization in the normal form described on [`Search`].
    fn in_normal_form(&self, choice: Choice, step: Step, next_state: State) -> bool {
        match (choice, self.run_start) {
            (Choice::Definite(_), None) => true,
            (Choice::Definite(_), Some(run_start)) => step.apply(run_start).is_none(),
            (Choice::Unknown { .. }, run_start) => {
                let blind_write = matches!(step, Step::Write { .. } | Step::Delete { .. });
                next_state != self.state && !(blind_write && run_start.is_some())
            }
        }
    }

    fn undo(&mut self, frame: Frame) {
        self.linearized.toggle(frame.choice);
        self.state = frame.state_before;
        self.run_start = frame.run_start_before;
        if let Choice::Definite(slot) = frame.choice {
            self.list.unlift(slot);
            self.definite_left += 1;
        }
    }

    /// Remembers this dead end if it has the longest partial linearization so far.
    fn note_dead_end(&mut self, blocking: usize) {
        let depth = self.stack.len();
        if self
            .deepest
            .as_ref()
            .is_some_and(|deepest| deepest.linearized.len() >= depth)
        {
            return;
        }
        self.deepest = Some(DeadEnd {
            linearized: self
                .stack
                .iter()
                .map(|frame| self.op(frame.choice))
                .collect(),
            state: self.state,
            blocking: self.definite[slot_of(blocking)],
            candidates: self.candidates(blocking),
        });
    }

    /// The operations that could have gone next: definite calls before `blocking` in the list,
    /// then unknown operations invoked by then and not linearized.
    fn candidates(&self, blocking: usize) -> Vec<usize> {
        let mut candidates = Vec::new();
        let mut entry = self.list.first();
        while entry != blocking && entry != NIL {
            if is_call(entry) {
                candidates.push(self.definite[slot_of(entry)]);
            }
            entry = self.list.next(entry);
        }
        let unknown = (0..self.unknown.len())
            .take_while(|&slot| self.may_try_unknown(slot, blocking))
            .map(|slot| Choice::Unknown { slot, blocking })
            .filter(|&choice| !self.linearized.contains(choice));
        candidates.extend(unknown.map(|choice| self.op(choice)));
        candidates
    }
}

// ------------------------------------------------------------------ explanations

/// How many operations of the partial linearization an explanation lists.
const EXPLAINED_TAIL: usize = 8;

fn explain(events: &[Event], history: &KeyHistory<'_>, dead_end: &DeadEnd) -> String {
    let mut text = String::new();
    let total = history.ops.len();
    if let Some(cut) = history.cut {
        let _ = writeln!(
            text,
            "The shortest failing prefix of this key's history ends at t={cut} ns: its {total} \
             operations (invoked by then; any still unanswered then count as unknown) have no \
             linearization."
        );
    } else {
        let _ = writeln!(
            text,
            "The {total} operations on this key have no linearization."
        );
    }
    let depth = dead_end.linearized.len();
    let _ = writeln!(
        text,
        "The search got furthest with {depth} of them linearized{}",
        if depth == 0 { "." } else { ", ending with:" }
    );
    let skipped = depth.saturating_sub(EXPLAINED_TAIL);
    if skipped > 0 {
        let _ = writeln!(text, "    ... {skipped} earlier operations");
    }
    for &op in &dead_end.linearized[skipped..] {
        let _ = writeln!(text, "    {}", describe_key_op(events, &history.ops[op]));
    }
    let _ = writeln!(
        text,
        "leaving the value {}. Then {} had responded, so it must have taken effect, \
         but no operation could go next:",
        history.value_text(dead_end.state),
        describe_key_op(events, &history.ops[dead_end.blocking]),
    );
    for &op in &dead_end.candidates {
        let key_op = &history.ops[op];
        let _ = writeln!(
            text,
            "    {}: {}",
            describe_key_op(events, key_op),
            why_not_next(history, key_op.step, dead_end.state)
        );
    }
    text
}

fn why_not_next(history: &KeyHistory<'_>, step: Step, state: State) -> String {
    let value = history.value_text(state);
    match step {
        Step::Read { seen } if seen != state => format!(
            "it read {} but the value was {value}",
            history.value_text(seen)
        ),
        Step::Delete {
            deleted: Some(true),
        } if state == ABSENT => "it reported a deletion but the key was absent".to_owned(),
        Step::Delete {
            deleted: Some(false),
        } if state != ABSENT => format!("it reported no deletion but the value was {value}"),
        Step::Cas {
            expected,
            succeeded: Some(true),
            ..
        } if state != expected => format!(
            "it succeeded but the value was {value}, not {}",
            history.value_text(expected)
        ),
        Step::Cas {
            succeeded: Some(false),
            ..
        } if step.apply(state).is_none() => {
            format!("it failed but the value was {value}, as it expected")
        }
        _ => "it could go here, but every way on from there was explored and failed".to_owned(),
    }
}

fn describe_key_op(events: &[Event], op: &KeyOp) -> String {
    format!(
        "event #{} ({})",
        op.event,
        describe_event(&events[op.event], op.response)
    )
}

/// `client 2: put "k" = "v" -> ok [invoked 10 ns, answered 20 ns]`, with the outcome shown as
/// unknown when `response` is `None`.
fn describe_event(event: &Event, response: Option<u64>) -> String {
    let outcome = match response {
        Some(_) => outcome_text(&event.outcome),
        None => "unknown".to_owned(),
    };
    let times = match response {
        Some(response) => format!("invoked {} ns, answered {response} ns", event.invoke),
        None => format!(
            "invoked {} ns, may or may not have taken effect",
            event.invoke
        ),
    };
    format!(
        "client {}: {} -> {outcome} [{times}]",
        event.client,
        op_text(&event.op)
    )
}

fn op_text(op: &Op) -> String {
    match op {
        Op::Get { key } => format!("get {key:?}"),
        Op::Put { key, value } => format!("put {key:?} = {value:?}"),
        Op::Delete { key } => format!("delete {key:?}"),
        Op::Cas { key, expected, new } => format!(
            "cas {key:?}: if {} then put {new:?}",
            optional_value_text(expected.as_deref())
        ),
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Get(value) => optional_value_text(value.as_deref()),
        Outcome::Put => "ok".to_owned(),
        Outcome::Delete { deleted: true } => "deleted".to_owned(),
        Outcome::Delete { deleted: false } => "nothing to delete".to_owned(),
        Outcome::Cas { succeeded: true } => "succeeded".to_owned(),
        Outcome::Cas { succeeded: false } => "failed".to_owned(),
        Outcome::Unknown => "unknown".to_owned(),
    }
}

fn optional_value_text(value: Option<&str>) -> String {
    value.map_or_else(|| "absent".to_owned(), |value| format!("{value:?}"))
}
