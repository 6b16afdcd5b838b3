//! The list cache of one client session: each member's raw answers to `tools/list`,
//! `prompts/list`, `resources/list` and `resources/templates/list`, page by page.
//!
//! Filled on a successful answer; a page is forgotten when that member sends the matching
//! `notifications/*/list_changed` (seen through [`crate::session::Session::watch_lists`] on its
//! member session), when the member goes down or comes back, and when its session is
//! re-opened. The member's raw answer is kept: policy still filters every answer for its
//! caller (`lists.rs`). At most [`MAX_BYTES`] of answers per client session; a page that does
//! not fit is not cached. Only members whose list changes the federation is sure to see are
//! cached (`lists.rs`: stdio members that declared `listChanged`).
//!
//! A fill that raced a change is refused: each (member, kind) has a generation, taken before
//! the request is sent and checked when its answer is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::util::lock;

/// Bytes of cached answers one client session holds at most.
pub const MAX_BYTES: usize = 1 << 20;

/// What a list method lists, as its `list_changed` names it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Tools,
    Prompts,
    /// `resources/list` and `resources/templates/list` (one notification covers both).
    Resources,
}

impl Kind {
    /// The kind a `notifications/<kind>/list_changed` is about.
    pub fn of_change(method: &str) -> Option<Kind> {
        match method {
            "notifications/tools/list_changed" => Some(Kind::Tools),
            "notifications/prompts/list_changed" => Some(Kind::Prompts),
            "notifications/resources/list_changed" => Some(Kind::Resources),
            _ => None,
        }
    }
}

/// One page: member, method, the member's own cursor (`None`: the first page).
type Key = (usize, &'static str, Option<String>);

#[derive(Default)]
struct Inner {
    pages: HashMap<Key, (Arc<Value>, usize)>,
    bytes: usize,
    /// Per (member, kind): bumped by every invalidation.
    generation: HashMap<(usize, Kind), u64>,
}

/// One client session's cached list pages.
#[derive(Default)]
pub struct ListCache(Mutex<Inner>);

/// The kind of a list method.
fn kind_of(method: &str) -> Kind {
    match method {
        "tools/list" => Kind::Tools,
        "prompts/list" => Kind::Prompts,
        _ => Kind::Resources,
    }
}

impl ListCache {
    /// The cached page of member `i`'s `method` at its `cursor` (shared, not copied).
    pub fn get(&self, i: usize, method: &'static str, cursor: Option<&str>) -> Option<Arc<Value>> {
        let g = lock(&self.0);
        g.pages
            .get(&(i, method, cursor.map(str::to_owned)))
            .map(|(v, _)| v.clone())
    }

    /// The generation to pass to [`ListCache::put`] for a request about to be sent.
    pub fn generation(&self, i: usize, method: &str) -> u64 {
        let g = lock(&self.0);
        g.generation
            .get(&(i, kind_of(method)))
            .copied()
            .unwrap_or(0)
    }

    /// Keeps member `i`'s answer `result` to `method` at `cursor`, unless the lists changed
    /// since `generation` was taken or it does not fit in [`MAX_BYTES`].
    pub fn put(
        &self,
        i: usize,
        method: &'static str,
        cursor: Option<&str>,
        generation: u64,
        result: &Arc<Value>,
    ) {
        let size = result.to_string().len();
        let mut g = lock(&self.0);
        let now = g
            .generation
            .get(&(i, kind_of(method)))
            .copied()
            .unwrap_or(0);
        if now != generation {
            return;
        }
        let key = (i, method, cursor.map(str::to_owned));
        let old = g.pages.get(&key).map_or(0, |(_, n)| *n);
        if g.bytes - old + size > MAX_BYTES {
            return;
        }
        g.bytes = g.bytes - old + size;
        g.pages.insert(key, (Arc::clone(result), size));
    }

    /// Forgets member `i`'s pages of `kind`.
    pub fn invalidate(&self, i: usize, kind: Kind) {
        let mut g = lock(&self.0);
        *g.generation.entry((i, kind)).or_insert(0) += 1;
        let mut freed = 0;
        g.pages.retain(|(m, method, _), (_, n)| {
            let gone = *m == i && kind_of(method) == kind;
            if gone {
                freed += *n;
            }
            !gone
        });
        g.bytes -= freed;
    }

    /// Forgets every page of member `i`.
    pub fn invalidate_member(&self, i: usize) {
        for kind in [Kind::Tools, Kind::Prompts, Kind::Resources] {
            self.invalidate(i, kind);
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        lock(&self.0).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: Value) -> Arc<Value> {
        Arc::new(v)
    }

    #[test]
    fn filled_then_forgotten_by_the_matching_change_only() {
        let c = ListCache::default();
        let tools = json(serde_json::json!({"tools": [{"name": "echo"}]}));
        let g = c.generation(0, "tools/list");
        c.put(0, "tools/list", None, g, &tools);
        c.put(1, "tools/list", None, c.generation(1, "tools/list"), &tools);
        let g = c.generation(0, "resources/templates/list");
        c.put(
            0,
            "resources/templates/list",
            Some("p2"),
            g,
            &json(serde_json::json!({})),
        );
        assert_eq!(c.get(0, "tools/list", None), Some(tools.clone()));
        assert_eq!(c.get(0, "tools/list", Some("p2")), None);
        assert!(c.get(0, "resources/templates/list", Some("p2")).is_some());

        c.invalidate(
            0,
            Kind::of_change("notifications/prompts/list_changed").expect("kind"),
        );
        assert!(c.get(0, "tools/list", None).is_some());
        c.invalidate(
            0,
            Kind::of_change("notifications/resources/list_changed").expect("kind"),
        );
        assert!(c.get(0, "resources/templates/list", Some("p2")).is_none());
        c.invalidate(0, Kind::Tools);
        assert!(c.get(0, "tools/list", None).is_none());
        assert!(
            c.get(1, "tools/list", None).is_some(),
            "another member's page stays"
        );
        c.invalidate_member(1);
        assert!(c.get(1, "tools/list", None).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_fill_that_raced_a_change_is_refused() {
        let c = ListCache::default();
        let g = c.generation(2, "tools/list");
        c.invalidate(2, Kind::Tools);
        c.put(
            2,
            "tools/list",
            None,
            g,
            &json(serde_json::json!({"tools": []})),
        );
        assert!(c.get(2, "tools/list", None).is_none());
        // A change of another kind does not refuse it.
        let g = c.generation(2, "tools/list");
        c.invalidate(2, Kind::Prompts);
        c.put(
            2,
            "tools/list",
            None,
            g,
            &json(serde_json::json!({"tools": []})),
        );
        assert!(c.get(2, "tools/list", None).is_some());
    }

    #[test]
    fn bounded_in_bytes() {
        let c = ListCache::default();
        let big = json(serde_json::json!({"tools": [{"name": "x".repeat(MAX_BYTES / 2)}]}));
        c.put(0, "tools/list", None, 0, &big);
        c.put(1, "tools/list", None, 0, &big);
        assert!(c.get(0, "tools/list", None).is_some());
        assert!(
            c.get(1, "tools/list", None).is_none(),
            "over the bound: not cached"
        );
        assert!(c.bytes() <= MAX_BYTES);
        // Replacing a page counts its new size only.
        c.put(
            0,
            "tools/list",
            None,
            0,
            &json(serde_json::json!({"tools": []})),
        );
        c.put(1, "tools/list", None, 0, &big);
        assert!(c.get(1, "tools/list", None).is_some());
        assert!(c.bytes() <= MAX_BYTES);
    }
}
