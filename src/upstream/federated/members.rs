//! One client session's member sessions, and which member listed which resource.
//!
//! Members are named by their stable id (`super::Member::id`), never by their place in the
//! file: a reload (`reload.rs`) adds and removes members without moving the others, so a
//! session's slot of an unchanged member (its member session, its child) stays as it is. A
//! member without a slot (added by a reload after the client initialized) is opened on first
//! use (`health.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use serde_json::Value;

use super::cache::{Kind, ListCache};
use crate::session::{Binding, Session};
use crate::util::lock;

/// Resource URIs (and templates) remembered per client session, at most: beyond, a URI no
/// member was remembered for is asked of each member in turn.
pub const MAX_URIS: usize = 10_000;

/// Where one member stands in one client session.
pub enum Slot {
    /// Initialized; its session is made when the client session is (`attach`). Holds the
    /// member's `initialize` result.
    Pending(Binding, Value),
    /// Serving, with what it declared in `initialize`.
    Live(Arc<Session>, Value),
    /// Its `initialize` failed after it bound a session: released at `attach`.
    Failed(Binding, String),
    /// Out of this client session, and why.
    Down(String),
}

impl Slot {
    /// Why a member is not serving (empty when it is).
    pub fn why(&self) -> &str {
        match self {
            Slot::Failed(_, w) | Slot::Down(w) => w,
            _ => "",
        }
    }
}

/// One client session's members, by member id.
pub struct Fed {
    /// At most one per member of the federation's table or of its draining members.
    slots: Mutex<HashMap<usize, Slot>>,
    /// Resource URI or URI template to the member that listed it first.
    uris: Mutex<HashMap<String, usize>>,
    /// The client's `initialize` (at most `--max-body`), to open a member's session later.
    pub init: Vec<u8>,
    /// The client session, once it is in the table.
    parent: OnceLock<Weak<Session>>,
    /// Per member: when its session was last re-opened (or tried).
    tried: Mutex<HashMap<usize, Instant>>,
    /// Held while a member's session is being opened, so that concurrent calls of this
    /// session wait for it instead of failing (`health.rs`).
    pub opening: Mutex<()>,
    /// Resources and templates were listed once to learn their owners (`lists.rs`).
    indexed: std::sync::atomic::AtomicBool,
    /// The members' list pages (`cache.rs`).
    pub lists: Arc<ListCache>,
}

impl Fed {
    pub fn new(slots: Vec<(usize, Slot)>, init: Vec<u8>) -> Fed {
        Fed {
            tried: Mutex::new(HashMap::new()),
            opening: Mutex::new(()),
            slots: Mutex::new(slots.into_iter().collect()),
            uris: Mutex::new(HashMap::new()),
            init,
            parent: OnceLock::new(),
            indexed: std::sync::atomic::AtomicBool::new(false),
            lists: Arc::new(ListCache::default()),
        }
    }

    /// Has member `i`'s session `child` forget `i`'s cached lists on each of its
    /// `list_changed`; to be called before the member's upstream sees `child`.
    pub fn watch(&self, i: usize, child: &Session) {
        let lists = Arc::downgrade(&self.lists);
        child.watch_lists(Box::new(move |method| {
            if let (Some(lists), Some(kind)) = (lists.upgrade(), Kind::of_change(method)) {
                lists.invalidate(i, kind);
            }
        }));
    }

    /// True when member `i` serves this session and its `initialize` result has `true` at
    /// `ptr` (e.g. `/capabilities/tools/listChanged`).
    pub fn declares(&self, i: usize, ptr: &str) -> bool {
        match lock(&self.slots).get(&i) {
            Some(Slot::Live(_, caps)) => caps.pointer(ptr).and_then(Value::as_bool) == Some(true),
            _ => false,
        }
    }

    /// True the first time only: the resources of this session are to be listed once.
    pub fn first_index(&self) -> bool {
        !self
            .indexed
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_parent(&self, session: &Arc<Session>) {
        let _ = self.parent.set(Arc::downgrade(session));
    }

    /// The client session, while it lives.
    pub fn parent(&self) -> Option<Arc<Session>> {
        self.parent.get().and_then(Weak::upgrade)
    }

    /// True when member `i` is out of this session (down, its session lost, or never opened
    /// in it: added by a reload) and was not tried within `every`; then it counts as tried
    /// now.
    pub fn may_revive(&self, i: usize, every: std::time::Duration) -> bool {
        let out = match lock(&self.slots).get(&i) {
            None | Some(Slot::Down(_)) => true,
            Some(Slot::Live(child, _)) => child.is_evicted(),
            Some(_) => false,
        };
        if !out {
            return false;
        }
        let mut tried = lock(&self.tried);
        if tried.get(&i).is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        tried.insert(i, Instant::now());
        true
    }

    /// Tells the client session's standalone stream, if open, that the lists changed.
    pub fn lists_changed(&self) {
        let Some(log) = self.parent().and_then(|p| p.streams.standalone_if_open()) else {
            return;
        };
        for what in ["tools", "prompts", "resources"] {
            let note =
                format!(r#"{{"jsonrpc":"2.0","method":"notifications/{what}/list_changed"}}"#);
            log.push(note.as_bytes());
        }
    }

    /// Member `i`'s session, or why it has none.
    pub fn live(&self, i: usize) -> Result<Arc<Session>, String> {
        match lock(&self.slots).get(&i) {
            Some(Slot::Live(child, _)) if child.is_evicted() => Err("its session ended".into()),
            Some(Slot::Live(child, _)) => Ok(child.clone()),
            Some(Slot::Pending(..)) => Err("its session is not open yet".into()),
            Some(other) => Err(other.why().to_owned()),
            None => Err("it is not open in this session yet".into()),
        }
    }

    /// True when member `i` serves this session and declared capability `cap`
    /// (`tools`, `prompts`, `resources`, `completions`, `logging`).
    pub fn has(&self, i: usize, cap: &str) -> bool {
        match lock(&self.slots).get(&i) {
            Some(Slot::Live(child, caps)) => {
                !child.is_evicted() && caps.pointer(&format!("/capabilities/{cap}")).is_some()
            }
            _ => false,
        }
    }

    /// Takes member `i` out of this session.
    pub fn set_down(&self, i: usize, why: &str) {
        if let Some(s) = lock(&self.slots).get_mut(&i)
            && matches!(s, Slot::Live(..))
        {
            *s = Slot::Down(why.to_owned());
        }
        self.lists.invalidate_member(i);
    }

    /// Member `i`'s slot, leaving it down ("closing") until [`Fed::put`].
    pub fn take(&self, i: usize) -> Slot {
        match lock(&self.slots).get_mut(&i) {
            Some(s) => std::mem::replace(s, Slot::Down("closing".into())),
            None => Slot::Down("no such upstream".into()),
        }
    }

    pub fn put(&self, i: usize, slot: Slot) {
        lock(&self.slots).insert(i, slot);
    }

    /// Member `i`'s slot, gone from this session (a reload removed or replaced it); its
    /// cached lists and remembered URIs are forgotten.
    pub fn remove(&self, i: usize) -> Option<Slot> {
        let slot = lock(&self.slots).remove(&i);
        lock(&self.tried).remove(&i);
        lock(&self.uris).retain(|_, owner| *owner != i);
        self.lists.invalidate_member(i);
        slot
    }

    /// The ids of the members with a slot.
    pub fn ids(&self) -> Vec<usize> {
        lock(&self.slots).keys().copied().collect()
    }

    /// Remembers that member `i` listed `uri`, unless another did first; true when `i` owns
    /// it (it may be shown).
    pub fn claim(&self, uri: &str, i: usize) -> bool {
        let mut g = lock(&self.uris);
        if let Some(&owner) = g.get(uri) {
            return owner == i;
        }
        if g.len() < MAX_URIS {
            g.insert(uri.to_owned(), i);
        }
        true
    }

    /// The member that listed `uri`, if one is remembered.
    pub fn owner(&self, uri: &str) -> Option<usize> {
        lock(&self.uris).get(uri).copied()
    }
}
