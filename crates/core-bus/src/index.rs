//! The immutable subscription index that publishers read without locks: exact topics in a persistent hash map,
//! wildcard patterns in a persistent token trie. Every update copies only the path it changes.

use std::sync::Arc;

use crate::anycast::Group;
use crate::mailbox::{MailboxShared, SubscriptionId};
use crate::topic::{Pattern, Segment, Topic};

/// One fanout subscription as stored in the index.
#[derive(Clone)]
pub(crate) struct FanoutTarget {
    pub(crate) mailbox: Arc<MailboxShared>,
    pub(crate) subscription: SubscriptionId,
}

/// Everything subscribed to one exact topic.
#[derive(Clone, Default)]
pub(crate) struct Route {
    pub(crate) fanout: Arc<[FanoutTarget]>,
    pub(crate) group: Option<Arc<Group>>,
}

impl Route {
    fn is_empty(&self) -> bool {
        self.fanout.is_empty() && self.group.is_none()
    }
}

#[derive(Clone, Default)]
struct TrieNode {
    literal: imbl::HashMap<Arc<str>, Arc<TrieNode>>,
    star: Option<Arc<TrieNode>>,
    hash: Option<Arc<TrieNode>>,
    /// Patterns that end at this node.
    here: Arc<[FanoutTarget]>,
    /// Patterns that end with `>` after this node.
    rest: Arc<[FanoutTarget]>,
}

impl TrieNode {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

/// A snapshot of all subscriptions.
#[derive(Clone, Default)]
pub(crate) struct Index {
    pub(crate) exact: imbl::HashMap<Topic, Route>,
    wild: Option<Arc<TrieNode>>,
    pub(crate) wildcard_count: usize,
}

fn with_target(list: &Arc<[FanoutTarget]>, target: FanoutTarget) -> Arc<[FanoutTarget]> {
    list.iter()
        .cloned()
        .chain(std::iter::once(target))
        .collect()
}

fn without_target(list: &Arc<[FanoutTarget]>, id: SubscriptionId) -> Arc<[FanoutTarget]> {
    list.iter()
        .filter(|t| t.subscription != id)
        .cloned()
        .collect()
}

fn trie_insert(node: &TrieNode, segments: &[Segment], target: FanoutTarget) -> TrieNode {
    let mut node = node.clone();
    match segments.split_first() {
        None => node.here = with_target(&node.here, target),
        Some((Segment::Gt, _)) => node.rest = with_target(&node.rest, target),
        Some((Segment::Star, rest)) => {
            let child = node.star.as_deref().cloned().unwrap_or_default();
            node.star = Some(Arc::new(trie_insert(&child, rest, target)));
        }
        Some((Segment::Hash, rest)) => {
            let child = node.hash.as_deref().cloned().unwrap_or_default();
            node.hash = Some(Arc::new(trie_insert(&child, rest, target)));
        }
        Some((Segment::Literal(token), rest)) => {
            let child = node
                .literal
                .get(token)
                .map(|c| (**c).clone())
                .unwrap_or_default();
            node.literal
                .insert(token.clone(), Arc::new(trie_insert(&child, rest, target)));
        }
    }
    node
}

fn trie_remove(node: &TrieNode, segments: &[Segment], id: SubscriptionId) -> TrieNode {
    fn prune(child: TrieNode) -> Option<Arc<TrieNode>> {
        (!child.is_empty()).then(|| Arc::new(child))
    }
    let mut node = node.clone();
    match segments.split_first() {
        None => node.here = without_target(&node.here, id),
        Some((Segment::Gt, _)) => node.rest = without_target(&node.rest, id),
        Some((Segment::Star, rest)) => {
            node.star = node
                .star
                .as_deref()
                .and_then(|c| prune(trie_remove(c, rest, id)));
        }
        Some((Segment::Hash, rest)) => {
            node.hash = node
                .hash
                .as_deref()
                .and_then(|c| prune(trie_remove(c, rest, id)));
        }
        Some((Segment::Literal(token), rest)) => {
            if let Some(child) = node.literal.get(token).cloned() {
                match prune(trie_remove(&child, rest, id)) {
                    Some(child) => node.literal.insert(token.clone(), child),
                    None => node.literal.remove(token),
                };
            }
        }
    }
    node
}

fn trie_match<'a>(node: &'a TrieNode, tokens: &[&str], out: &mut Vec<&'a FanoutTarget>) {
    if let Some(hash) = &node.hash {
        for skip in 0..=tokens.len() {
            trie_match(hash, &tokens[skip..], out);
        }
    }
    let Some((first, rest)) = tokens.split_first() else {
        out.extend(node.here.iter());
        return;
    };
    out.extend(node.rest.iter());
    if let Some(star) = &node.star {
        trie_match(star, rest, out);
    }
    if let Some(child) = node.literal.get(*first) {
        trie_match(child, rest, out);
    }
}

impl Index {
    pub(crate) fn with_fanout(&self, pattern: &Pattern, target: FanoutTarget) -> Index {
        let mut next = self.clone();
        match pattern.as_topic() {
            Some(topic) => {
                let mut route = next.exact.get(&topic).cloned().unwrap_or_default();
                route.fanout = with_target(&route.fanout, target);
                next.exact.insert(topic, route);
            }
            None => {
                let root = next.wild.as_deref().cloned().unwrap_or_default();
                next.wild = Some(Arc::new(trie_insert(&root, pattern.segments(), target)));
                next.wildcard_count += 1;
            }
        }
        next
    }

    pub(crate) fn without_fanout(&self, pattern: &Pattern, id: SubscriptionId) -> Index {
        let mut next = self.clone();
        match pattern.as_topic() {
            Some(topic) => {
                if let Some(mut route) = next.exact.get(&topic).cloned() {
                    route.fanout = without_target(&route.fanout, id);
                    if route.is_empty() {
                        next.exact.remove(&topic);
                    } else {
                        next.exact.insert(topic, route);
                    }
                }
            }
            None => {
                if let Some(root) = next.wild.as_deref() {
                    let root = trie_remove(root, pattern.segments(), id);
                    next.wild = (!root.is_empty()).then(|| Arc::new(root));
                    next.wildcard_count = next.wildcard_count.saturating_sub(1);
                }
            }
        }
        next
    }

    pub(crate) fn with_group(&self, topic: &Topic, group: Option<Arc<Group>>) -> Index {
        let mut next = self.clone();
        let mut route = next.exact.get(topic).cloned().unwrap_or_default();
        route.group = group;
        if route.is_empty() {
            next.exact.remove(topic);
        } else {
            next.exact.insert(topic.clone(), route);
        }
        next
    }

    /// Calls `each` once per fanout subscription whose pattern matches `topic` (exact and wildcard).
    pub(crate) fn for_each_fanout(
        &self,
        topic: &Topic,
        route: Option<&Route>,
        mut each: impl FnMut(&FanoutTarget),
    ) {
        if let Some(route) = route {
            route.fanout.iter().for_each(&mut each);
        }
        let Some(root) = self.wild.as_deref() else {
            return;
        };
        if topic.is_internal() {
            return;
        }
        let tokens: Vec<&str> = topic.tokens().collect();
        let mut matched = Vec::new();
        trie_match(root, &tokens, &mut matched);
        if matched.len() > 1 {
            matched.sort_by_key(|t| t.subscription);
            matched.dedup_by_key(|t| t.subscription);
        }
        matched.into_iter().for_each(each);
    }
}
