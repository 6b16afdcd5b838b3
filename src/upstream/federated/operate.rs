//! What operators see of a federation and do to it ([`Operate`]): readiness, shutdown,
//! every member (in force and draining), their children, rolling restarts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Federated, Member};
use crate::error::Error;
use crate::upstream::{ChildInfo, MemberView, Operate};
use crate::util::lock;

impl Operate for Federated {
    fn name(&self) -> &str {
        "federation"
    }

    fn kind(&self) -> &'static str {
        "federated"
    }

    fn mode(&self) -> &'static str {
        "federated"
    }

    /// Ready while any member is: the others' tools are then absent, not the whole endpoint.
    fn ready(&self) -> Result<(), String> {
        let mut down = Vec::new();
        for m in &self.table().members {
            match m.up.ready() {
                Ok(()) => return Ok(()),
                Err(e) => down.push(format!("{}: {e}", m.name)),
            }
        }
        Err(down.join("; "))
    }

    fn shutdown(&self, grace: Duration) {
        self.stopped.store(true, Ordering::Relaxed);
        let draining: Vec<Arc<Member>> = lock(&self.draining).drain(..).collect();
        for m in self.table().members.iter().chain(&draining) {
            m.up.shutdown(grace);
        }
    }

    fn members(&self) -> Vec<MemberView> {
        let t = self.table();
        let draining = lock(&self.draining).clone();
        t.members
            .iter()
            .map(|m| (m, false))
            .chain(draining.iter().map(|m| (m, true)))
            .map(|(m, draining)| MemberView {
                name: m.name.clone(),
                down: m.is_down(),
                draining,
                upstream: m.up.clone(),
            })
            .collect()
    }

    fn children(&self) -> Vec<ChildInfo> {
        let t = self.table();
        t.members.iter().flat_map(|m| m.up.children()).collect()
    }

    fn as_federated(&self) -> Option<&Federated> {
        Some(self)
    }

    fn restart(&self, grace: Duration) -> Result<String, Error> {
        let done: Vec<String> = self
            .table()
            .members
            .iter()
            .filter_map(|m| {
                m.up.restart(grace)
                    .ok()
                    .map(|what| format!("{}: {what}", m.name))
            })
            .collect();
        if done.is_empty() {
            return Err(Error::NotSupported("no upstream has children to restart"));
        }
        Ok(done.join("; "))
    }
}
