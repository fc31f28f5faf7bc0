//! Login throttling: failed logins counted per client address in a bounded table.
//!
//! A client is its IPv4 address, or the /64 of its IPv6 address (one host usually has a
//! whole /64); every non-IP peer (a Unix socket, a test client) is one client. After
//! `max_failures` failures within `window`, the client is locked out: every request is
//! answered `429` without looking at the password, for `first_lockout`, doubling with
//! each further lockout up to `max_lockout`. A failure just after a lockout locks again
//! (for twice as long); a success clears the client. The table holds at most `capacity`
//! clients; a new one pushes out the one heard from least recently, so a flood of
//! addresses costs a bounded amount of memory. Attempts still being verified count
//! against the limit, so parallel connections cannot get more guesses in than one.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use poem::Addr;

/// The limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_failures: u32,
    pub(crate) window: Duration,
    pub(crate) first_lockout: Duration,
    pub(crate) max_lockout: Duration,
    pub(crate) capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(5 * 60),
            first_lockout: Duration::from_secs(5),
            max_lockout: Duration::from_secs(15 * 60),
            capacity: 10_000,
        }
    }
}

/// Who failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// Any peer without an IP address.
    Other,
}

impl ClientKey {
    pub(crate) fn of(addr: &Addr) -> Self {
        match addr.as_socket_addr().map(std::net::SocketAddr::ip) {
            Some(IpAddr::V4(v4)) => Self::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6((v6.to_bits() >> 64) as u64),
            },
            None => Self::Other,
        }
    }
}

/// One client's record.
#[derive(Debug)]
struct Entry {
    /// Failures counted in the current window.
    failures: u32,
    window_start: Instant,
    /// Attempts being verified right now.
    in_flight: u32,
    /// Lockouts so far (each doubles the next).
    lockouts: u32,
    locked_until: Option<Instant>,
    /// Whether a refused attempt of the current lockout has been logged.
    lockout_logged: bool,
    /// When this client last failed or its last lockout ends, whichever is later.
    last_event: Instant,
    /// Position in the eviction order.
    tick: u64,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            window_start: now,
            in_flight: 0,
            lockouts: 0,
            locked_until: None,
            lockout_logged: false,
            last_event: now,
            tick: 0,
        }
    }

    /// Nothing worth remembering any more: quiet for a window plus the longest lockout.
    fn is_stale(&self, limits: &Limits, now: Instant) -> bool {
        self.in_flight == 0 && now >= self.last_event + limits.window + limits.max_lockout
    }
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<ClientKey, Entry>,
    /// `(client, tick)` in the order clients were heard from; an element whose tick is
    /// not its entry's current one is stale and skipped (compacted when it piles up).
    order: VecDeque<(ClientKey, u64)>,
    tick: u64,
}

impl Table {
    /// The client's entry, created (pushing out the least recently heard-from client when
    /// full) or reset if stale, and moved to the back of the eviction order.
    fn touch(&mut self, key: ClientKey, limits: &Limits, now: Instant) -> &mut Entry {
        if self.entries.get(&key).is_some_and(|e| e.is_stale(limits, now)) {
            self.entries.remove(&key);
        }
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= limits.capacity.max(1) {
                let Some((old, tick)) = self.order.pop_front() else {
                    break;
                };
                if self.entries.get(&old).is_some_and(|e| e.tick == tick) {
                    self.entries.remove(&old);
                }
            }
        }
        self.tick += 1;
        let tick = self.tick;
        self.order.push_back((key, tick));
        if self.order.len() > 2 * limits.capacity.max(1) + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, t)| entries.get(k).is_some_and(|e| e.tick == *t));
        }
        let entry = self.entries.entry(key).or_insert_with(|| Entry::new(now));
        entry.tick = tick;
        entry
    }
}

/// An attempt refused without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Whole seconds until the client may try again (at least 1).
    pub(crate) retry_after: u64,
    /// Whether this is the first refusal of the lockout (the one to log).
    pub(crate) first_of_lockout: bool,
}

/// The failure table, shared by every clone of one `BasicAuth`.
#[derive(Debug)]
pub(crate) struct Throttle {
    limits: Limits,
    table: Mutex<Table>,
}

impl Throttle {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves counters, never a broken invariant that
        // matters for safety: carry on with them.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many clients are remembered.
    pub(crate) fn len(&self) -> usize {
        self.table().entries.len()
    }

    /// Lets the attempt be verified (counting it as in flight until [`Attempt::succeeded`]
    /// or [`Attempt::failed`], or its drop), or refuses it.
    pub(crate) fn begin(self: &Arc<Self>, key: ClientKey) -> Result<Attempt, Refusal> {
        let now = Instant::now();
        let limits = self.limits;
        let mut table = self.table();
        let entry = table.touch(key, &limits, now);
        if let Some(until) = entry.locked_until
            && until > now
        {
            let first_of_lockout = !entry.lockout_logged;
            entry.lockout_logged = true;
            return Err(Refusal {
                retry_after: whole_seconds(until - now),
                first_of_lockout,
            });
        }
        if entry.failures + entry.in_flight >= limits.max_failures {
            // Verifications in flight could reach the limit: wait for them.
            return Err(Refusal {
                retry_after: 1,
                first_of_lockout: false,
            });
        }
        entry.in_flight += 1;
        Ok(Attempt {
            throttle: Arc::clone(self),
            key,
            done: false,
        })
    }

    fn finish(&self, key: ClientKey, outcome: Outcome) -> Option<Duration> {
        let now = Instant::now();
        let limits = self.limits;
        let mut table = self.table();
        if outcome != Outcome::Failed && !table.entries.contains_key(&key) {
            // Pushed out meanwhile: nothing to undo.
            return None;
        }
        let entry = table.touch(key, &limits, now);
        entry.in_flight = entry.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Abandoned => None,
            Outcome::Succeeded => {
                if entry.in_flight == 0 {
                    table.entries.remove(&key);
                } else {
                    *entry = Entry {
                        in_flight: entry.in_flight,
                        tick: entry.tick,
                        ..Entry::new(now)
                    };
                }
                None
            }
            Outcome::Failed => {
                if now >= entry.window_start + limits.window {
                    entry.failures = 0;
                    entry.window_start = now;
                }
                entry.failures += 1;
                entry.last_event = entry.last_event.max(now);
                if entry.failures < limits.max_failures {
                    return None;
                }
                let lockout = lockout(&limits, entry.lockouts);
                entry.lockouts = entry.lockouts.saturating_add(1);
                let until = now + lockout;
                entry.locked_until = Some(until);
                entry.lockout_logged = false;
                entry.last_event = until;
                // One more failure right after the lockout locks again, for longer.
                entry.failures = limits.max_failures - 1;
                entry.window_start = until;
                Some(lockout)
            }
        }
    }
}

/// The length of lockout number `n` (from 0): `first_lockout` doubled `n` times, at most
/// `max_lockout`.
fn lockout(limits: &Limits, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    limits
        .first_lockout
        .checked_mul(factor)
        .unwrap_or(limits.max_lockout)
        .min(limits.max_lockout)
}

/// Whole seconds, rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    Abandoned,
}

/// An attempt being verified; dropping it unfinished (the client went away) counts it as
/// neither success nor failure.
#[derive(Debug)]
pub(crate) struct Attempt {
    throttle: Arc<Throttle>,
    key: ClientKey,
    done: bool,
}

impl Attempt {
    /// The right credentials: the client starts over.
    pub(crate) fn succeeded(mut self) {
        self.done = true;
        self.throttle.finish(self.key, Outcome::Succeeded);
    }

    /// Wrong credentials: counted; returns the lockout this failure started, if any.
    pub(crate) fn failed(mut self) -> Option<Duration> {
        self.done = true;
        self.throttle.finish(self.key, Outcome::Failed)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.throttle.finish(self.key, Outcome::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u32) -> ClientKey {
        ClientKey::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn keys_group_ipv6_by_64() {
        let key = |s: &str| ClientKey::of(&Addr::socket(s.parse().unwrap()));
        assert_eq!(key("[2001:db8::1]:1"), key("[2001:db8::ffff:2]:2"));
        assert_ne!(key("[2001:db8::1]:1"), key("[2001:db8:0:1::1]:1"));
        assert_eq!(key("[::ffff:10.0.0.1]:1"), key("10.0.0.1:2"));
        assert_ne!(key("10.0.0.1:1"), key("10.0.0.2:1"));
        assert_eq!(ClientKey::of(&Addr::custom("test", "x")), ClientKey::Other);
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let limits = Limits::default();
        let secs: Vec<u64> = (0..12).map(|n| lockout(&limits, n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 640, 900, 900, 900, 900]);
        assert_eq!(lockout(&limits, u32::MAX).as_secs(), 900);
    }

    #[test]
    fn failures_lock_and_success_clears() {
        let throttle = Arc::new(Throttle::new(Limits::default()));
        for _ in 0..4 {
            assert_eq!(throttle.begin(v4(1)).unwrap().failed(), None);
        }
        assert_eq!(
            throttle.begin(v4(1)).unwrap().failed(),
            Some(Duration::from_secs(5))
        );
        let refusal = throttle.begin(v4(1)).unwrap_err();
        assert!(refusal.first_of_lockout && refusal.retry_after == 5);
        assert!(!throttle.begin(v4(1)).unwrap_err().first_of_lockout);
        throttle.begin(v4(2)).unwrap().succeeded();
        assert_eq!(throttle.len(), 1, "a success leaves nothing behind");
    }

    #[test]
    fn attempts_in_flight_count() {
        let throttle = Arc::new(Throttle::new(Limits::default()));
        let pending: Vec<_> = (0..5).map(|_| throttle.begin(v4(1)).unwrap()).collect();
        assert_eq!(throttle.begin(v4(1)).unwrap_err().retry_after, 1);
        drop(pending);
        assert!(
            throttle.begin(v4(1)).is_ok(),
            "abandoned attempts are not failures"
        );
    }

    #[test]
    fn table_is_bounded_and_evicts_the_oldest() {
        let throttle = Arc::new(Throttle::new(Limits {
            capacity: 100,
            ..Limits::default()
        }));
        for _ in 0..5 {
            let _ = throttle.begin(v4(0)).map(Attempt::failed);
        }
        for n in 1..1_000 {
            throttle.begin(v4(n)).unwrap().failed();
            assert!(throttle.len() <= 100);
            assert!(throttle.table().order.len() <= 2 * 100 + 64 + 1);
        }
        assert!(throttle.begin(v4(0)).is_ok(), "the oldest client was pushed out");
    }
}
