//! The bridge sessions' pool (`legacy.rs`) against an upstream that opens sessions: parked
//! calls do not hold the bound of running ones, surplus idle sessions are closed, and an idle
//! session away from parked calls is lent first (else a new one is opened while there is
//! room).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::legacy::{Lease, Pool};
use crate::config::SessionConfig;
use crate::error::Error;
use crate::session::{Binding, Session, Sessions};
use crate::stream::ReplayLimits;
use crate::upstream::{Call, Operate, Reply, Upstream};

/// An upstream that opens sessions, pinned to two children in turn, and counts the ones
/// closed.
#[derive(Default)]
struct Opener {
    closed: Mutex<usize>,
    opened: Mutex<usize>,
}

impl Upstream for Opener {
    fn initialize(&self, _call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let body = br#"{"jsonrpc":"2.0","id":"shadowcat-bridge","result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"up","version":"1"}}}"#;
        let mut n = self.opened.lock().unwrap();
        *n += 1;
        let binding = Binding {
            child: *n % 2,
            ..Binding::default()
        };
        Ok((binding, Reply::Message(body.to_vec())))
    }
    fn forward(&self, _call: Call<'_>) -> Result<Reply, Error> {
        Ok(Reply::Accepted)
    }
    fn close(&self, _session: &Session) {
        *self.closed.lock().unwrap() += 1;
    }
}

impl Operate for Opener {
    fn name(&self) -> &str {
        "opener"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn mode(&self) -> &'static str {
        "test"
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self, _grace: Duration) {}
}

/// A session table with room for every session the tests open.
fn sessions() -> Sessions {
    Sessions::new(&SessionConfig {
        max: 100,
        max_per_client: 100,
        idle: Duration::from_secs(60),
        replay: ReplayLimits::default(),
    })
}

#[test]
fn r13_parked_calls_do_not_hold_the_bridge_sessions_bound() {
    let up = Opener::default();
    let sessions = sessions();
    let pool = Pool::new(2);
    let soon = Instant::now() + Duration::from_secs(7);
    let lease = || pool.lease(&up, &sessions, true, soon);
    let mut a = lease().unwrap();
    let b = lease().unwrap();
    // Both running: the third is refused, with the seconds until the first round ends.
    let e = lease().err().expect("over the bound");
    assert!(matches!(e, Error::BridgeSessions { limit: 2, .. }), "{e}");
    assert_eq!(e.status(), 503);
    assert!(e.retry_after().is_some_and(|s| (6..=7).contains(&s)), "{e}");
    // A parked call does not count: a third session opens.
    a.park();
    let mut c = lease().unwrap();
    assert_eq!(pool.counts(), (3, 1));
    c.park();
    let d = lease().unwrap();
    // The retried call takes its session back, over the bound for a while; its session is
    // closed once idle beyond the bound.
    a.unpark(soon);
    drop((a, b, d));
    assert_eq!(pool.counts(), (4, 1));
    let e = lease().unwrap();
    assert_eq!(
        *up.closed.lock().unwrap(),
        1,
        "the surplus idle session is closed"
    );
    assert_eq!(pool.counts(), (3, 1));
    drop((c, e));
    assert_eq!(pool.counts(), (3, 0));
    let _f = lease().unwrap();
    assert_eq!(*up.closed.lock().unwrap(), 2);
    assert_eq!(pool.counts(), (2, 0));
}

#[test]
fn r13_an_idle_session_away_from_parked_calls_is_lent_first() {
    let up = Opener::default();
    let sessions = sessions();
    let pool = Pool::new(16);
    let soon = Instant::now() + Duration::from_secs(7);
    let lease = || pool.lease(&up, &sessions, true, soon).unwrap();
    let (mut a, b, c) = (lease(), lease(), lease());
    let child = |l: &Lease| l.session.binding.child;
    assert_eq!((child(&a), child(&b), child(&c)), (1, 0, 1));
    a.park();
    drop((b, c));
    // The last one back (on child 1, where `a` is parked) would be next; child 0's goes first.
    let d = lease();
    assert_eq!(child(&d), 0);
    // Every idle one is beside the parked call: a new one rather than wait behind it.
    let e = lease();
    assert_eq!(child(&e), 0);
    assert_eq!(*up.opened.lock().unwrap(), 4);
}
