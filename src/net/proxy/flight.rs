//! Request collapsing ("single flight"): concurrent viewer requests for the
//! same object share one upstream fetch. The first request starts the work
//! as a task of its own; the others await the same result. The entry is
//! removed as soon as the work ends, so a later request starts afresh (and
//! finds the result in the cache, or fetches a newer playlist).
//!
//! ```text
//! viewer 1 ─┐                       ┌─▶ viewer 1
//! viewer 2 ─┼─▶ key "live01/seg42" ─┼─▶ viewer 2      one fetch upstream
//! viewer 3 ─┘    (one task)         └─▶ viewer 3
//! ```
//!
//! The work runs in its own task so a viewer hanging up does not cancel the
//! fetch the others wait for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::stream::lock;

/// One result shared by every request that asked while it was being made;
/// `None` if the work's task died (a panic), which callers treat as a failure.
type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

/// How a request got its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// It started the work.
    Led,
    /// It joined work another request had started (a collapsed request).
    Joined,
}

/// Works in flight, by key.
pub(super) struct Flights<V: Clone> {
    in_flight: Arc<Mutex<HashMap<String, Flight<V>>>>,
}

impl<V: Clone + Send + Sync + 'static> Default for Flights<V> {
    fn default() -> Self {
        Flights {
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Removes a flight's entry when its task ends, however it ends.
struct Landing<V: Clone> {
    in_flight: Arc<Mutex<HashMap<String, Flight<V>>>>,
    key: String,
}

impl<V: Clone> Drop for Landing<V> {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.key);
    }
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    /// The result of the work for `key`: the one already in flight, else the
    /// one `start` makes now (run in its own task). Must be called within a
    /// tokio runtime.
    pub(super) async fn run<F>(&self, key: &str, start: impl FnOnce() -> F) -> (Option<V>, Role)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (flight, role) = {
            let mut in_flight = lock(&self.in_flight);
            match in_flight.get(key) {
                Some(flight) => (flight.clone(), Role::Joined),
                None => {
                    let work = start();
                    let landing = Landing {
                        in_flight: self.in_flight.clone(),
                        key: key.to_string(),
                    };
                    // The entry is inserted below before this lock is
                    // released, so the task cannot remove it first.
                    let task = tokio::spawn(async move {
                        let _landing = landing;
                        work.await
                    });
                    let flight = async move { task.await.ok() }.boxed().shared();
                    in_flight.insert(key.to_string(), flight.clone());
                    (flight, Role::Led)
                }
            }
        };
        (flight.await, role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_requests_share_one_work_and_later_ones_start_afresh() {
        let flights: Arc<Flights<usize>> = Arc::new(Flights::default());
        let started = Arc::new(AtomicUsize::new(0));
        let ask = |flights: Arc<Flights<usize>>, started: Arc<AtomicUsize>| async move {
            flights
                .run("live01/segment000001.ts", move || async move {
                    let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    n
                })
                .await
        };
        let results =
            futures_util::future::join_all((0..8).map(|_| ask(flights.clone(), started.clone())))
                .await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "one work for 8 requests");
        assert!(results.iter().all(|(v, _)| *v == Some(1)));
        let led = results.iter().filter(|(_, r)| *r == Role::Led).count();
        assert_eq!(led, 1);
        assert!(lock(&flights.in_flight).is_empty(), "removed when done");
        let (again, role) = ask(flights.clone(), started.clone()).await;
        assert_eq!((again, role), (Some(2), Role::Led));
    }

    #[tokio::test]
    async fn a_leader_hanging_up_does_not_cancel_the_work_others_wait_for() {
        let flights: Arc<Flights<&'static str>> = Arc::new(Flights::default());
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "done"
        };
        let leader = tokio::spawn({
            let flights = flights.clone();
            async move { flights.run("k", slow).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = tokio::spawn({
            let flights = flights.clone();
            async move { flights.run("k", slow).await }
        });
        leader.abort();
        let joined = follower.await.expect("follower finishes");
        assert_eq!(joined, (Some("done"), Role::Joined));
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let flights: Flights<u32> = Flights::default();
        let (a, b) = tokio::join!(
            flights.run("a", || async { 1 }),
            flights.run("b", || async { 2 })
        );
        assert_eq!((a, b), ((Some(1), Role::Led), (Some(2), Role::Led)));
    }
}
