//! Reading a request's values while its structure is parsed. The values
//! are most of a request's bytes, and reading them (exact float parsing)
//! costs about twice the parse that finds them; so the parse keeps each
//! cohort's array as raw JSON and queues it as it is met, and a second
//! thread reads the queue meanwhile. When the parse ends, this thread
//! reads the queue from its other end, and the two meet.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::values::{COHORTS, Checked, Values, check, read_array};
use crate::helpers;

/// Below this many bytes a helper costs more than it saves (handing work
/// over is tens of microseconds; reading a megabyte of values, a few
/// milliseconds).
const MIN_BYTES_TO_SPLIT: usize = 256 * 1024;

/// Why the values were not read.
#[derive(Debug)]
pub(super) enum Unread {
    /// The structure's parse failed with this.
    Parse(String),
    /// The `n`th cohort met (counting from 0) is not an array of points.
    Value(usize, serde_json::Error),
}

/// Runs `parse` (a parse of `body` that meets cohorts as [`RawCohorts`])
/// on this thread, and reads the cohorts it meets, in the order met; runs
/// `beside` meanwhile. For a large body a helper thread
/// ([`crate::helpers`]) runs `beside` and then reads what the parse has
/// met, while it goes on; a small body is read here after its parse, as is
/// a large one no helper took up.
pub(super) fn read_while_parsing<B, S, T>(
    body: &B,
    parse: impl FnOnce() -> Result<S, String>,
    beside: impl FnOnce() -> T + Send + 'static,
) -> (Result<(S, Vec<Values>), Unread>, T)
where
    B: AsRef<[u8]> + Clone + Send + Sync + 'static,
    T: Send + 'static,
{
    let queue = Arc::new(Queue::new(body.as_ref()));
    // Installed first: however this function leaves, the queue is closed,
    // so a helper never waits on it for good.
    let installed = Installed::new(&queue);
    let helper = if body.as_ref().len() >= MIN_BYTES_TO_SPLIT {
        let (queue, body) = (queue.clone(), body.clone());
        Helper::Offered(helpers::offer(move || {
            (beside(), queue.read_from_front(body.as_ref()))
        }))
    } else {
        Helper::None(beside)
    };
    let parsed = parse();
    queue.close(parsed.is_err());
    drop(installed);
    let mine = match parsed {
        Ok(_) => queue.read_from_back(body.as_ref()),
        Err(_) => Ok(Vec::new()),
    };
    let (beside, theirs) = match helper {
        Helper::Offered(helper) => helper.join(),
        Helper::None(beside) => (beside(), Ok(Vec::new())),
    };
    let read = parsed.map_err(Unread::Parse).and_then(|structure| {
        let values = queue.join(theirs, mine)?;
        Ok((structure, values))
    });
    (read, beside)
}

/// The helper's share of [`read_while_parsing`], or, with none, what it
/// would have run beside the reading.
enum Helper<T, F> {
    Offered(helpers::Offered<(T, Share)>),
    None(F),
}

/// A pair's `values`: the last copy of each of [`COHORTS`] as raw JSON,
/// queued for reading when the pair's `values` ends, if a
/// [`read_while_parsing`] is under way on this thread. Every other entry
/// (another key, or a copy that a later one replaces) is checked as it is
/// met, stored nowhere, so a request is refused for a bad value anywhere,
/// as a map of arrays of points refuses it, without holding what it will
/// not judge.
pub(super) struct RawCohorts<'a>(pub(super) [Option<&'a RawValue>; 2]);

impl<'de: 'a, 'a> Deserialize<'de> for RawCohorts<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cohorts = deserializer.deserialize_map(RawCohortsVisitor(std::marker::PhantomData))?;
        QUEUE.with_borrow(|queue| {
            if let Some(queue) = queue {
                queue.push(cohorts.0.iter().flatten().map(|raw| raw.get()));
            }
        });
        Ok(cohorts)
    }
}

struct RawCohortsVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for RawCohortsVisitor<'a> {
    type Value = RawCohorts<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A map's own word: the typed parse names a refusal in its words.
        f.write_str("a map")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut cohorts = [None; 2];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match COHORTS.iter().position(|cohort| *cohort == key) {
                Some(i) => {
                    let raw: &'a RawValue = map.next_value()?;
                    if let Some(replaced) = cohorts[i].replace(raw) {
                        check(replaced.get()).map_err(serde::de::Error::custom)?;
                    }
                }
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(RawCohorts(cohorts))
    }
}

thread_local! {
    /// The queue of the [`read_while_parsing`] under way on this thread.
    /// serde gives a `Deserialize` impl no context of its own, so the
    /// parse finds its queue here.
    static QUEUE: std::cell::RefCell<Option<Arc<Queue>>> = const { std::cell::RefCell::new(None) };
}

/// Installs a queue on this thread until dropped, and then closes it (a
/// panicking parse stops its reading); the queue installed before, if
/// any, is put back.
struct Installed {
    queue: Arc<Queue>,
    previous: Option<Arc<Queue>>,
}

impl Installed {
    fn new(queue: &Arc<Queue>) -> Installed {
        Installed {
            previous: QUEUE.replace(Some(queue.clone())),
            queue: queue.clone(),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        QUEUE.set(self.previous.take());
        // Closed already after a parse that returned; not after one that
        // panicked, whose reading stops.
        self.queue.close_stopping_if_open();
    }
}

/// The cohorts met and not yet read.
struct Queue {
    /// Where the body lies, to queue an array as its place in it.
    body: Range<usize>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Each queued array with its number in the order met.
    waiting: VecDeque<(usize, Array)>,
    met: usize,
    /// No more will be met.
    closed: bool,
    /// Stop reading: the parse or a read failed.
    stopped: bool,
    /// The front reader waits for more (a wake is a system call: only
    /// then is one made).
    reader_waits: bool,
}

/// An array of the body, as its place in it: a `RawValue` borrowed from
/// the body always lies there. A copy, should one not.
enum Array {
    InBody(Range<usize>),
    Copied(Box<str>),
}

/// What one thread read: each array's number in the order met, and its values.
type Share = Result<Vec<(usize, Values)>, (usize, serde_json::Error)>;

impl Queue {
    fn new(body: &[u8]) -> Queue {
        Queue {
            body: body.as_ptr_range().start as usize..body.as_ptr_range().end as usize,
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a queue and flags, whole after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push<'a>(&self, arrays: impl Iterator<Item = &'a str>) {
        let mut state = self.state();
        for array in arrays {
            let start = array.as_ptr() as usize;
            let place = if self.body.contains(&start) && start + array.len() <= self.body.end {
                Array::InBody(start - self.body.start..start - self.body.start + array.len())
            } else {
                Array::Copied(array.into())
            };
            let number = state.met;
            state.waiting.push_back((number, place));
            state.met += 1;
        }
        let wake = state.reader_waits;
        drop(state);
        if wake {
            self.changed.notify_one();
        }
    }

    /// No more will be met; `stop` also ends the reading. Closing again
    /// may only add the stop.
    fn close(&self, stop: bool) {
        let mut state = self.state();
        state.closed = true;
        state.stopped |= stop;
        drop(state);
        self.changed.notify_all();
    }

    /// Closes the queue and stops its reading, unless it is closed already.
    fn close_stopping_if_open(&self) {
        let open = !self.state().closed;
        if open {
            self.close(true);
        }
    }

    /// Reads arrays from the front as they are met, until the parse is over
    /// and none is left.
    fn read_from_front(&self, body: &[u8]) -> Share {
        self.read_each(body, |mut state| {
            loop {
                if state.stopped {
                    return None;
                }
                if let Some(next) = state.waiting.pop_front() {
                    return Some(next);
                }
                if state.closed {
                    return None;
                }
                state.reader_waits = true;
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.reader_waits = false;
            }
        })
    }

    /// Reads what is left from the back, once the parse is over.
    fn read_from_back(&self, body: &[u8]) -> Share {
        self.read_each(body, |mut state| match state.stopped {
            true => None,
            false => state.waiting.pop_back(),
        })
    }

    fn read_each(
        &self,
        body: &[u8],
        mut next: impl FnMut(MutexGuard<'_, State>) -> Option<(usize, Array)>,
    ) -> Share {
        let mut read = Vec::new();
        while let Some((number, array)) = next(self.state()) {
            // The range of a `RawValue` the parse took from this body:
            // always within it (an empty slice reads as an error if not).
            let values = read_array(match &array {
                Array::InBody(range) => body.get(range.clone()).unwrap_or_default(),
                Array::Copied(text) => text.as_bytes(),
            });
            match values {
                Ok(values) => read.push((number, values)),
                Err(error) => {
                    self.state().stopped = true;
                    return Err((number, error));
                }
            }
        }
        Ok(read)
    }

    /// Every array's values in the order met, from the two threads' shares;
    /// or the failed read of the earlier array of the two that failed.
    fn join(&self, front: Share, back: Share) -> Result<Vec<Values>, Unread> {
        let (front, back) = match (front, back) {
            (Ok(front), Ok(back)) => (front, back),
            (Err((a, e)), Err((b, _))) if a < b => return Err(Unread::Value(a, e)),
            (_, Err((b, e))) | (Err((b, e)), _) => return Err(Unread::Value(b, e)),
        };
        let met = self.state().met;
        let mut all: Vec<Option<Values>> = std::iter::repeat_with(|| None).take(met).collect();
        for (number, values) in front.into_iter().chain(back) {
            if let Some(slot) = all.get_mut(number) {
                *slot = Some(values);
            }
        }
        // Both shares read to the end: every array met is read.
        all.into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Unread::Parse("a cohort's values were not read".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Pairs<'a>(#[serde(borrow)] Vec<RawCohorts<'a>>);

    /// `pairs` pairs of cohorts of `points` values each, some gaps among
    /// them, and `bad` values (pair, index, text) in the canary's place.
    fn request_text(pairs: usize, points: usize, bad: &[(usize, usize, &str)]) -> String {
        let cohort = |a: usize, canary: bool| -> String {
            let values: Vec<String> = (0..points)
                .map(|p| {
                    match bad
                        .iter()
                        .find(|(ba, bp, _)| canary && (*ba, *bp) == (a, p))
                    {
                        Some((_, _, text)) => text.to_string(),
                        None if p % 97 == 0 => "null".into(),
                        None if p % 89 == 0 => "\"NaN\"".into(),
                        None => format!("{}", value(a, canary, p, points)),
                    }
                })
                .collect();
            format!("[{}]", values.join(","))
        };
        let pairs: Vec<String> = (0..pairs)
            .map(|a| {
                format!(
                    "{{\"control\": {}, \"experiment\": {}}}",
                    cohort(a, false),
                    cohort(a, true)
                )
            })
            .collect();
        format!("[\n{}\n]", pairs.join(",\n"))
    }

    /// The value of pair `a`'s cohort at `p`: each distinct.
    fn value(a: usize, canary: bool, p: usize, points: usize) -> f64 {
        (a * points + p) as f64 * 0.1 + 1e-9 + if canary { 1e6 } else { 0.0 }
    }

    fn read_text(text: &str) -> (Result<(usize, Vec<Values>), Unread>, u32) {
        let body: Arc<[u8]> = Arc::from(text.as_bytes());
        let parse = || {
            serde_json::from_slice::<Pairs>(&body)
                .map(|pairs| pairs.0.len())
                .map_err(|e| e.to_string())
        };
        read_while_parsing(&body, parse, || 7)
    }

    #[test]
    fn a_large_request_is_read_while_parsed_as_one_thread_reads_it() {
        let text = request_text(40, 1000, &[]);
        assert!(text.len() > 2 * MIN_BYTES_TO_SPLIT, "the test must split");
        let (read, beside) = read_text(&text);
        let (pairs, values) = read.unwrap();
        assert_eq!((pairs, beside, values.len()), (40, 7, 80));
        let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&text).unwrap();
        for (a, cohort) in values.iter().enumerate() {
            let expected = &parsed[a / 2][COHORTS[a % 2]];
            assert_eq!(cohort.len(), 1000);
            for (p, value) in cohort.iter().enumerate() {
                match &expected[p] {
                    serde_json::Value::Number(n) => assert_eq!(*value, n.as_f64(), "{a}[{p}]"),
                    _ => assert_eq!(*value, None, "{a}[{p}]"),
                }
            }
        }
    }

    #[test]
    fn a_small_request_is_read_and_refused_as_a_large_one() {
        let text = request_text(2, 10, &[]);
        let (read, beside) = read_text(&text);
        let (pairs, values) = read.unwrap();
        assert_eq!((pairs, beside, values.len()), (2, 7, 4));
        // The second pair's canary, its second value.
        assert_eq!(values[3][1], Some(value(1, true, 1, 10)));
        assert_eq!(values[2][1], Some(value(1, false, 1, 10)));
        let (read, _) = read_text(&request_text(2, 10, &[(1, 4, "true")]));
        assert!(matches!(read, Err(Unread::Value(3, _))), "{read:?}");
    }

    #[test]
    fn a_bad_array_is_named_by_its_number_whichever_thread_read_it() {
        let failed = |bad: &[(usize, usize, &str)]| match read_text(&request_text(40, 1000, bad)).0
        {
            Err(Unread::Value(number, error)) => (number, error.to_string()),
            other => panic!("{other:?}"),
        };
        let (infinity, boolean) = (
            "-Infinity is not a measurement",
            "invalid type: boolean `true`",
        );
        // Whichever of two bad arrays a thread reads first stops the other:
        // either may be named.
        let (number, error) = failed(&[(3, 5, "\"-Infinity\""), (38, 2, "true")]);
        let expected = if number == 7 { infinity } else { boolean };
        assert!(
            [7, 77].contains(&number) && error.starts_with(expected),
            "{number}: {error}"
        );
        let (number, error) = failed(&[(38, 2, "true")]);
        assert!(
            number == 77 && error.starts_with(boolean),
            "{number}: {error}"
        );
    }

    #[test]
    fn the_shares_join_in_the_order_met_and_the_earlier_failure_is_told() {
        let body = br#"[1][2][3,null][true]"#;
        let queue = Queue::new(body);
        let arrays = [&body[0..3], &body[3..6], &body[6..14], &body[14..]];
        queue.push(arrays.iter().map(|a| std::str::from_utf8(a).unwrap()));
        queue.close(false);
        // The back reader meets the bad array first and stops.
        let back = queue.read_from_back(body);
        assert!(matches!(back, Err((3, _))), "{back:?}");
        let front = Ok(vec![(0, vec![Some(1.0)]), (1, vec![Some(2.0)])]);
        assert!(matches!(queue.join(front, back), Err(Unread::Value(3, _))));
        let back = Ok(vec![(2, vec![Some(3.0), None])]);
        let front = Ok(vec![(0, vec![Some(1.0)]), (1, vec![Some(2.0)])]);
        assert!(matches!(
            queue.join(front, back),
            Err(Unread::Parse(why)) if why.contains("not read")
        ));
        let front = Ok(vec![(1, vec![Some(2.0)]), (0, vec![Some(1.0)])]);
        let back = Ok(vec![(3, vec![]), (2, vec![Some(3.0), None])]);
        let joined = queue.join(front, back).unwrap();
        assert_eq!(
            joined,
            [
                vec![Some(1.0)],
                vec![Some(2.0)],
                vec![Some(3.0), None],
                vec![]
            ]
        );
        let front = Err((1, serde_json::from_str::<u8>("x").unwrap_err()));
        let back = Err((2, serde_json::from_str::<u8>("y").unwrap_err()));
        assert!(matches!(queue.join(front, back), Err(Unread::Value(1, _))));
    }

    #[test]
    fn a_failed_parse_is_told_and_beside_still_runs() {
        let text = request_text(40, 1000, &[]);
        let broken = format!("{}x", &text[..text.len() - 1]);
        let (read, beside) = read_text(&broken);
        assert!(matches!(read, Err(Unread::Parse(_))), "{read:?}");
        assert_eq!(beside, 7);
    }

    #[test]
    fn the_last_copy_of_a_cohort_is_kept_and_every_other_entry_checked() {
        let cohorts: RawCohorts = serde_json::from_str(
            r#"{"control": [0], "extra": [1, null, "NaN"], "experiment": [2], "control": [3]}"#,
        )
        .unwrap();
        let raw = cohorts.0.map(|raw| raw.map(RawValue::get));
        assert_eq!(raw, [Some("[3]"), Some("[2]")]);
        for refused in [
            r#"{"control": ["x"], "control": [1]}"#,
            r#"{"control": [1], "extra": [true]}"#,
            r#"{"extra": 5}"#,
        ] {
            assert!(
                serde_json::from_str::<RawCohorts>(refused).is_err(),
                "{refused}"
            );
        }
    }
}
