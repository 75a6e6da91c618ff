//! Presence changes waiting to be told: joins, leaves and updates merge into one diff that goes
//! to every member at most once per presence interval, so a crowd joining at once costs each
//! member a few frames instead of one per newcomer (never O(N²) frames).

use std::collections::HashMap;

use edgeroom_protocol::{Member, PresenceDiff};

/// The merged presence changes not yet sent.
///
/// Changes are numbered. A member is only sent a diff when it holds a change newer than the
/// member's welcome (which already listed everything before) other than its own join.
#[derive(Debug, Default)]
pub struct PendingPresence {
    diff: Option<PresenceDiff>,
    last_sent_ms: Option<u64>,
    /// Number of the newest change, and the member it was the join of.
    newest: (u64, Option<u64>),
    /// Number of the newest change that was not the join of `newest`'s member.
    newest_other: u64,
    /// The change number each member's welcome reflected (absent after a wake-up: told all).
    welcomed: HashMap<u64, u64>,
}

impl PendingPresence {
    /// Member `id` got a welcome listing the members as they are now.
    pub fn welcomed(&mut self, id: u64) {
        self.welcomed.insert(id, self.newest.0);
    }

    /// A member joined.
    pub fn joined(&mut self, member: Member) {
        self.count_change(Some(member.connection_id));
        let diff = self.diff();
        diff.left.retain(|id| *id != member.connection_id);
        upsert(&mut diff.joined, member);
    }

    /// A member changed its data.
    pub fn updated(&mut self, member: Member) {
        self.count_change(None);
        let diff = self.diff();
        match diff.joined.iter_mut().find(|m| m.connection_id == member.connection_id) {
            // Members that have not heard of the join yet learn the new data with it.
            Some(joined) => *joined = member,
            None => upsert(&mut diff.updated, member),
        }
    }

    /// A member left. It is told even when its join is still pending: members that arrived in
    /// between saw it in their welcome.
    pub fn left(&mut self, id: u64) {
        self.count_change(None);
        self.welcomed.remove(&id);
        let diff = self.diff();
        diff.joined.retain(|m| m.connection_id != id);
        diff.updated.retain(|m| m.connection_id != id);
        if !diff.left.contains(&id) {
            diff.left.push(id);
        }
    }

    /// How long until the waiting changes may go, if any wait.
    pub fn wait_ms(&self, now_ms: u64, interval_ms: u64) -> Option<u64> {
        self.diff.as_ref()?;
        let next = self.last_sent_ms.map_or(0, |last| last.saturating_add(interval_ms));
        Some(next.saturating_sub(now_ms))
    }

    /// The merged diff and which of `members` need it, when one waits and the interval since
    /// the last one has passed.
    pub fn take_due(
        &mut self,
        now_ms: u64,
        interval_ms: u64,
        members: Vec<u64>,
    ) -> Option<(PresenceDiff, Vec<u64>)> {
        if self.wait_ms(now_ms, interval_ms)? > 0 {
            return None;
        }
        self.last_sent_ms = Some(now_ms);
        let diff = self.diff.take()?;
        let recipients = members.into_iter().filter(|id| self.needs_diff(*id)).collect();
        Some((diff, recipients))
    }

    fn needs_diff(&self, id: u64) -> bool {
        let newest_for_them = if self.newest.1 == Some(id) { self.newest_other } else { self.newest.0 };
        self.welcomed.get(&id).is_none_or(|welcomed| newest_for_them > *welcomed)
    }

    fn count_change(&mut self, join_of: Option<u64>) {
        let number = self.newest.0 + 1;
        if join_of.is_none() || join_of != self.newest.1 {
            self.newest_other = self.newest.0;
        }
        self.newest = (number, join_of);
    }

    fn diff(&mut self) -> &mut PresenceDiff {
        self.diff.get_or_insert_with(|| PresenceDiff { joined: vec![], left: vec![], updated: vec![] })
    }
}

fn upsert(members: &mut Vec<Member>, member: Member) {
    match members.iter_mut().find(|m| m.connection_id == member.connection_id) {
        Some(existing) => *existing = member,
        None => members.push(member),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::Body;

    fn member(id: u64, data: &str) -> Member {
        Member { connection_id: id, user: None, data: Body::from_value(data).unwrap() }
    }

    #[test]
    fn changes_merge_into_one_diff_per_interval() {
        let mut pending = PendingPresence::default();
        assert_eq!(pending.wait_ms(0, 50), None);
        pending.joined(member(1, "a"));
        assert_eq!(pending.wait_ms(0, 50), Some(0), "the first change goes at once");
        let (first, _) = pending.take_due(0, 50, vec![1]).unwrap();
        assert_eq!(first.joined, vec![member(1, "a")]);
        for id in 2..=100 {
            pending.joined(member(id, "x"));
        }
        pending.updated(member(2, "y"));
        pending.updated(member(1, "b"));
        pending.left(3);
        assert_eq!(pending.take_due(20, 50, vec![1]), None, "within the interval they wait");
        assert_eq!(pending.wait_ms(20, 50), Some(30));
        let (merged, _) = pending.take_due(50, 50, vec![1]).unwrap();
        assert_eq!(merged.joined.len(), 98, "99 joined, one of them left again");
        assert_eq!(merged.joined[0], member(2, "y"), "an update before the join was told rides along");
        assert_eq!(merged.updated, vec![member(1, "b")]);
        assert_eq!(merged.left, vec![3]);
        assert_eq!(pending.wait_ms(50, 50), None, "nothing waits");
    }

    #[test]
    fn members_are_only_told_what_their_welcome_did_not_list() {
        let mut pending = PendingPresence::default();
        // Alice joins alone: nothing to tell her.
        pending.welcomed(1);
        pending.joined(member(1, "a"));
        let (_, to) = pending.take_due(0, 50, vec![1]).unwrap();
        assert!(to.is_empty(), "nobody is told of their own join");
        // Bob joins: alice learns it, bob's welcome had it all.
        pending.welcomed(2);
        pending.joined(member(2, "b"));
        let (_, to) = pending.take_due(50, 50, vec![1, 2]).unwrap();
        assert_eq!(to, vec![1]);
        // Carol joins, then bob updates: carol's welcome predates the update, so all are told.
        pending.welcomed(3);
        pending.joined(member(3, "c"));
        pending.updated(member(2, "b2"));
        let (_, to) = pending.take_due(100, 50, vec![1, 2, 3]).unwrap();
        assert_eq!(to, vec![1, 2, 3], "an update goes to everyone, its author too");
        // Dave joins after erin: erin needs dave's join, dave's welcome listed erin.
        pending.welcomed(5);
        pending.joined(member(5, "e"));
        pending.welcomed(4);
        pending.joined(member(4, "d"));
        let (_, to) = pending.take_due(150, 50, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(to, vec![1, 2, 3, 5, 6], "members unknown after a wake-up are told everything");
    }
}
