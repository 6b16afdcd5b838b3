//! Who may reach which member, and which member a name belongs to: the routing and policy
//! checks that listing (`lists.rs`) and calls by name (`calls.rs`) share.

use std::sync::Arc;

use super::members::Fed;
use super::policy::{self, Of, Who};
use super::{Member, Table};
use crate::upstream::Call;

/// "Unknown tool: NAME", saying so when `name` is one of a member the last reload removed.
pub(super) fn unknown(t: &Table, what: &str, name: &str) -> String {
    let gone = t.gone.iter().find(|(_, prefix)| {
        !prefix.is_empty()
            && name
                .strip_prefix(prefix.as_str())
                .is_some_and(|r| r.starts_with(t.sep.as_str()))
    });
    match gone {
        Some((member, _)) => {
            format!("Unknown {what}: {name} (upstream {member} was removed by a config reload)")
        }
        None => format!("Unknown {what}: {name}"),
    }
}

/// True when the caller of `call` is the era bridge's session, shared by every caller
/// (`crate::bridge::legacy`).
pub(super) fn bridged(call: &Call<'_>) -> bool {
    call.session
        .is_some_and(|s| s.principal.is_none() && s.client == "bridge")
}

/// Who the caller of `call` is, for policy (the bridge's session: nobody in particular).
pub(super) fn who<'c>(call: &'c Call<'_>) -> Who<'c> {
    match call.session {
        Some(s) => Who {
            principal: s.principal.as_deref(),
            scopes: s.scopes(),
        },
        None => Who::default(),
    }
}

/// True when the caller of `call` may see and use member `m`'s tool or prompt `local`
/// ([`Of::Names`]) or resource `local` ([`Of::Resources`]).
pub(super) fn allowed(m: &Member, call: &Call<'_>, of: Of, local: &str) -> bool {
    if bridged(call) {
        // Whose call it is is unknown there: only what everyone may have, and a tool only
        // when no principal or scope shows or calls it differently (their renames and fixed
        // arguments cannot be applied, so they are not skipped either).
        return policy::allows_everyone(&m.policy, of, local)
            && (of == Of::Resources || policy::uniform(&m.policy, local));
    }
    policy::allows(&m.policy, who(call), of, local)
}

/// True when member `m` serves `fed`'s session, is not down, and declared `cap`.
pub(super) fn serving(fed: &Fed, m: &Member, cap: &str) -> bool {
    !m.is_down() && fed.has(m.id, cap)
}

/// The member a tool or prompt name belongs to, and the name it knows.
pub(super) fn route_name<'t, 'n>(
    t: &'t Table,
    name: &'n str,
) -> Option<(&'t Arc<Member>, &'n str)> {
    for m in &t.members {
        if m.prefix.is_empty() {
            continue;
        }
        if let Some(local) = name
            .strip_prefix(m.prefix.as_str())
            .and_then(|r| r.strip_prefix(t.sep.as_str()))
        {
            return Some((m, local));
        }
    }
    let bare = t.members.iter().find(|m| m.prefix.is_empty())?;
    Some((bare, name))
}
