//! How many calls a provider gets at once: an adaptive cap (AIMD, as TCP does it). The cap
//! starts at `initial`, doubles per round of successes while it has never been refused
//! ("slow start"), is halved when the provider answers 429 or says it is overloaded, and
//! then grows back by one per round of successes; it never exceeds the configured maximum
//! nor falls below one. One overload halves it once: calls sent before a cut that come back
//! refused say nothing new about the cut cap.
//!
//! Permits are a FIFO semaphore holding `max` permits in all; a cut that cannot take
//! permits back at once (they are in flight) is a debt paid by the next permits released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limiter {
    max: usize,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
    /// Bumped at every cut: a permit taken before it reports overloads of the old cap.
    epoch: AtomicU64,
}

struct State {
    limit: usize,
    /// Below this the cap doubles per round; above it, it grows by one per round.
    threshold: usize,
    /// Successes towards the next step of additive growth (one per round of `limit`).
    credits: usize,
    /// Permits still to be withdrawn from circulation after a cut.
    debt: usize,
    /// Permits handed out and not yet released.
    in_flight: usize,
    /// Calls waiting for a permit: demand the cap holds back as much as the calls in flight.
    waiting: usize,
}

/// One call's place; released (or withdrawn, after a cut) when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
    epoch: AtomicU64,
}

/// A snapshot for `/v1/providers` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterState {
    pub limit: usize,
    pub max: usize,
    pub in_flight: usize,
}

impl Limiter {
    pub fn new(max: usize, initial: usize) -> Arc<Self> {
        let max = max.max(1);
        let initial = initial.clamp(1, max);
        // The permits above the initial cap are added as it grows.
        Arc::new(Self {
            max,
            slots: Arc::new(Semaphore::new(initial)),
            state: Mutex::new(State {
                limit: initial,
                threshold: max,
                credits: 0,
                debt: 0,
                in_flight: 0,
                waiting: 0,
            }),
            epoch: AtomicU64::new(0),
        })
    }

    /// A place at once, if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(self.issued(permit))
    }

    /// Waits (first come, first served) for a place.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        /// Counts a call as waiting until it has its permit or gives the wait up.
        struct Waiting<'a>(&'a Limiter);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().waiting -= 1;
            }
        }
        self.lock().waiting += 1;
        let waiting = Waiting(self);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        drop(waiting);
        self.issued(permit)
    }

    fn issued(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        self.lock().in_flight += 1;
        Slot {
            permit: Some(permit),
            limiter: self.clone(),
            epoch: AtomicU64::new(self.epoch.load(Ordering::Acquire)),
        }
    }

    pub fn state(&self) -> LimiterState {
        let state = self.lock();
        LimiterState {
            limit: state.limit,
            max: self.max,
            in_flight: state.in_flight,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call succeeded: the cap grows, but only while it is what holds calls back (a cap
    /// nobody fills proves nothing about the provider). The tests of "filled" are Linux's
    /// for a TCP window: half of it in slow start, all of it after. Calls waiting for a
    /// place count: when a whole wave answers at once, its last successes come before the
    /// waiting calls have taken the places the first ones freed.
    fn succeeded(&self) {
        let mut state = self.lock();
        if state.limit >= self.max {
            return;
        }
        let demand = state.in_flight + state.waiting;
        let grow = if state.limit < state.threshold {
            2 * demand > state.limit
        } else if demand >= state.limit {
            state.credits += 1;
            state.credits >= state.limit
        } else {
            false
        };
        if grow {
            state.limit += 1;
            state.credits = 0;
            self.give(&mut state, 1);
        }
    }

    /// The provider refused a call sent under `epoch` as too many: halve the cap, once per
    /// cut. Returns whether this refusal cut it.
    fn overloaded(&self, epoch: u64) -> bool {
        let mut state = self.lock();
        if self
            .epoch
            .compare_exchange(epoch, epoch + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let before = state.limit;
        let after = (before / 2).max(1);
        state.limit = after;
        state.threshold = after;
        state.credits = 0;
        state.debt += before - after;
        // Withdraw what is free now; the rest as calls end.
        while state.debt > 0 {
            match self.slots.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    state.debt -= 1;
                }
                Err(_) => break,
            }
        }
        true
    }

    /// Puts `count` permits back in circulation, first cancelling any debt.
    fn give(&self, state: &mut State, count: usize) {
        let cancelled = count.min(state.debt);
        state.debt -= cancelled;
        self.slots.add_permits(count - cancelled);
    }
}

impl Slot {
    /// The call succeeded.
    pub fn succeeded(&self) {
        self.limiter.succeeded();
    }

    /// The provider answered "too many" (429, or overloaded). The call's next attempt, if
    /// any, is sent under the cap as it now stands.
    pub fn overloaded(&self) -> bool {
        let epoch = self.epoch.load(Ordering::Acquire);
        let cut = self.limiter.overloaded(epoch);
        self.epoch.store(
            self.limiter.epoch.load(Ordering::Acquire),
            Ordering::Release,
        );
        cut
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.in_flight -= 1;
        if let Some(permit) = self.permit.take() {
            if state.debt > 0 {
                state.debt -= 1;
                permit.forget();
            } else {
                drop(permit);
            }
        }
    }
}

/// Whether a status means "too many requests" rather than a broken request.
pub fn is_overload_status(status: u16) -> bool {
    // 429: rate limited; 503: unavailable; 529: Anthropic's "overloaded".
    matches!(status, 429 | 503 | 529)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_start_doubles_per_round_up_to_the_maximum() {
        let limiter = Limiter::new(64, 16);
        for expected in [32, 64, 64] {
            let slots: Vec<Slot> = (0..limiter.state().limit)
                .map(|_| limiter.try_acquire().unwrap())
                .collect();
            assert!(limiter.try_acquire().is_none());
            for slot in &slots {
                slot.succeeded();
            }
            drop(slots);
            assert_eq!(limiter.state().limit, expected);
        }
        assert_eq!(limiter.slots.available_permits(), 64);
    }

    #[tokio::test]
    async fn calls_waiting_for_a_place_keep_slow_start_going_when_a_wave_answers_at_once() {
        let limiter = Limiter::new(8, 4);
        let slots: Vec<Slot> = (0..4).map(|_| limiter.try_acquire().unwrap()).collect();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        while limiter.lock().waiting < 4 {
            tokio::task::yield_now().await;
        }
        // The whole wave answers before any waiting call runs again.
        for slot in slots {
            slot.succeeded();
            drop(slot);
        }
        assert_eq!(limiter.state().limit, 8);
        for waiter in waiters {
            drop(waiter.await.unwrap());
        }
        assert_eq!(limiter.lock().waiting, 0);
        assert_eq!(limiter.state().in_flight, 0);
    }

    #[tokio::test]
    async fn a_wait_given_up_no_longer_counts_as_demand() {
        let limiter = Limiter::new(8, 1);
        let slot = limiter.try_acquire().unwrap();
        let waiting = limiter.clone();
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), async move {
            waiting.acquire().await
        })
        .await;
        assert!(gave_up.is_err());
        assert_eq!(limiter.lock().waiting, 0);
        drop(slot);
    }

    #[tokio::test]
    async fn one_overload_halves_once_and_growth_is_then_additive() {
        let limiter = Limiter::new(64, 40);
        let slots: Vec<Slot> = (0..40).map(|_| limiter.try_acquire().unwrap()).collect();
        // Every call of the burst comes back refused: one cut.
        let cuts = slots.iter().filter(|s| s.overloaded()).count();
        assert_eq!(cuts, 1);
        assert_eq!(limiter.state().limit, 20);
        drop(slots);
        assert_eq!(limiter.slots.available_permits(), 20);
        assert_eq!(limiter.state().in_flight, 0);
        // A full round of successes adds one.
        let slots: Vec<Slot> = (0..20).map(|_| limiter.try_acquire().unwrap()).collect();
        assert!(limiter.try_acquire().is_none());
        slots.iter().for_each(Slot::succeeded);
        drop(slots);
        assert_eq!(limiter.state().limit, 21);
        // A later overload, under the new cap, cuts again.
        let slot = limiter.try_acquire().unwrap();
        assert!(slot.overloaded());
        drop(slot);
        assert_eq!(limiter.state().limit, 10);
        assert_eq!(limiter.slots.available_permits(), 10);
    }

    #[tokio::test]
    async fn an_idle_cap_does_not_grow_and_it_never_falls_below_one() {
        let limiter = Limiter::new(8, 4);
        let slot = limiter.try_acquire().unwrap();
        slot.succeeded();
        drop(slot);
        assert_eq!(limiter.state().limit, 4);
        for _ in 0..5 {
            let slot = limiter.try_acquire().unwrap();
            slot.overloaded();
        }
        assert_eq!(limiter.state().limit, 1);
        assert_eq!(limiter.slots.available_permits(), 1);
    }
}
