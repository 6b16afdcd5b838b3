//! A federation member's traffic: [`Counted`] wraps the member's upstream and counts the
//! messages forwarded to it and those that failed, for `shadowcat_member_requests_total` and
//! `shadowcat_member_errors_total`.
//!
//! Owns: the two counters. Must not touch: what the member does; every call goes through
//! unchanged. A failure is an error that means no answer (unreachable, timeout, child gone,
//! unavailable) or an upstream 5xx; JSON-RPC errors and 4xx answers are answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Upstream;
use super::{Call, ChildInfo, ExclusiveInfo, MemberView, Operate, PoolInfo, ReplicaInfo, Reply};
use crate::error::{Error, Source};
use crate::session::{Binding, Session};

/// An upstream whose traffic is counted.
pub struct Counted {
    inner: Arc<dyn Upstream>,
    requests: AtomicU64,
    errors: AtomicU64,
}

impl Counted {
    /// Counts `inner`'s traffic.
    pub fn new(inner: Arc<dyn Upstream>) -> Counted {
        Counted {
            inner,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn count<T>(&self, r: &Result<T, Error>, reply: impl Fn(&T) -> &Reply) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let failed = match r {
            Ok(t) => matches!(reply(t), Reply::Relay { status, .. } if *status >= 500),
            Err(Error::UpstreamSessionLost) => false,
            Err(e) => e.source() == Source::Upstream,
        };
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Upstream for Counted {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let r = self.inner.initialize(call);
        self.count(&r, |(_, reply)| reply);
        r
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let r = self.inner.forward(call);
        self.count(&r, |reply| reply);
        r
    }

    fn close(&self, session: &Session) {
        self.inner.close(session);
    }

    fn attach(&self, session: &Arc<Session>) {
        self.inner.attach(session);
    }

    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        self.inner.listen(session)
    }
}

impl Operate for Counted {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn mode(&self) -> &'static str {
        self.inner.mode()
    }
    fn ready(&self) -> Result<(), String> {
        self.inner.ready()
    }
    fn shutdown(&self, grace: Duration) {
        self.inner.shutdown(grace);
    }
    fn children(&self) -> Vec<ChildInfo> {
        self.inner.children()
    }
    fn pool(&self) -> Option<PoolInfo> {
        self.inner.pool()
    }
    fn exclusive_tools(&self) -> Option<ExclusiveInfo> {
        self.inner.exclusive_tools()
    }
    fn members(&self) -> Vec<MemberView> {
        self.inner.members()
    }
    fn replicas(&self) -> Vec<ReplicaInfo> {
        self.inner.replicas()
    }
    fn restart(&self, grace: Duration) -> Result<String, Error> {
        self.inner.restart(grace)
    }
    fn traffic(&self) -> Option<(u64, u64)> {
        Some((
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ))
    }
}
