//! The immutable subscription index that publishers read without locks: exact topics in a persistent hash map,
//! wildcard patterns in a persistent token trie. Every update copies only the path it changes; insertion, removal
//! and matching walk the trie iteratively, and matching costs at most trie nodes × topic tokens. A pattern's
//! entries are fanout subscriptions, the named anycast groups on it (MQTT shared subscriptions) and the durable
//! bindings of it (STOMP durable subscriptions); a topic's own anycast group sits in its exact route.

use std::collections::HashSet;
use std::sync::Arc;

use crate::anycast::Group;
use crate::durable::Binding;
use crate::matching::Segment;
use crate::queue::{Queue, SubscriptionId};
use crate::topic::{Pattern, Topic};

/// Where the messages of one pattern subscription go.
#[derive(Clone)]
pub(crate) enum Receiver {
    /// A mailbox's fanout subscription: every message.
    Mailbox(Arc<Queue>),
    /// A named anycast group on the pattern (an MQTT shared subscription): one member gets each message.
    Shared(Arc<Group>),
    /// A durable binding: a copy of every message goes into its queue's group.
    Durable(Arc<Binding>),
}

/// One pattern subscription as stored in the index: a fanout subscription, a named group or a durable binding.
#[derive(Clone)]
pub(crate) struct FanoutTarget {
    pub(crate) receiver: Receiver,
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

    /// Fanout subscriptions of mailboxes and durable bindings (named groups left out).
    pub(crate) fn subscribers(&self) -> usize {
        self.fanout
            .iter()
            .filter(|t| matches!(t.receiver, Receiver::Mailbox(_) | Receiver::Durable(_)))
            .count()
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

impl TrieNode {
    /// The child a wildcard or literal segment leads to (`>` has no child: it ends a pattern).
    fn child(&self, segment: &Segment) -> Option<&Arc<TrieNode>> {
        match segment {
            Segment::Star => self.star.as_ref(),
            Segment::Hash => self.hash.as_ref(),
            Segment::Literal(token) => self.literal.get(token),
            Segment::Gt => None,
        }
    }

    /// Replaces (or, with `None`, removes) the child `segment` leads to.
    fn set_child(&mut self, segment: &Segment, child: Option<Arc<TrieNode>>) {
        match segment {
            Segment::Star => self.star = child,
            Segment::Hash => self.hash = child,
            Segment::Literal(token) => match child {
                Some(child) => {
                    self.literal.insert(token.clone(), child);
                }
                None => {
                    self.literal.remove(token);
                }
            },
            Segment::Gt => {}
        }
    }
}

/// The segments that lead to a pattern's node, and whether it ends with `>` (stored in that node's `rest`).
fn path_of(segments: &[Segment]) -> (&[Segment], bool) {
    match segments.split_last() {
        Some((Segment::Gt, path)) => (path, true),
        _ => (segments, false),
    }
}

/// Copies of the nodes along `path` from `root` (missing nodes are new and empty), root first. Iterative: a
/// pattern's depth never becomes stack depth.
fn copy_path(root: &TrieNode, path: &[Segment]) -> Vec<TrieNode> {
    let mut nodes = Vec::with_capacity(path.len() + 1);
    nodes.push(root.clone());
    for segment in path {
        let child = nodes
            .last()
            .and_then(|node| node.child(segment))
            .map(|child| (**child).clone())
            .unwrap_or_default();
        nodes.push(child);
    }
    nodes
}

/// Puts copied nodes back together bottom-up; an empty child is pruned when `prune` is set.
fn rebuild(mut nodes: Vec<TrieNode>, path: &[Segment], prune: bool) -> TrieNode {
    let mut child = nodes.pop().unwrap_or_default();
    for segment in path.iter().rev() {
        let mut parent = nodes.pop().unwrap_or_default();
        let keep = !(prune && child.is_empty());
        parent.set_child(segment, keep.then(|| Arc::new(child)));
        child = parent;
    }
    child
}

fn trie_insert(root: &TrieNode, segments: &[Segment], target: FanoutTarget) -> TrieNode {
    let (path, gt) = path_of(segments);
    let mut nodes = copy_path(root, path);
    if let Some(end) = nodes.last_mut() {
        if gt {
            end.rest = with_target(&end.rest, target);
        } else {
            end.here = with_target(&end.here, target);
        }
    }
    rebuild(nodes, path, false)
}

fn trie_remove(root: &TrieNode, segments: &[Segment], id: SubscriptionId) -> TrieNode {
    let (path, gt) = path_of(segments);
    let mut node = root;
    for segment in path {
        match node.child(segment) {
            Some(child) => node = child,
            None => return root.clone(),
        }
    }
    let mut nodes = copy_path(root, path);
    if let Some(end) = nodes.last_mut() {
        if gt {
            end.rest = without_target(&end.rest, id);
        } else {
            end.here = without_target(&end.here, id);
        }
    }
    rebuild(nodes, path, true)
}

/// The trie run as an NFA over the topic's tokens: the set of nodes reached after each token. A node reached
/// through `#` stays in the set for every later token (the `#` absorbs them), so each token costs at most one step
/// per node, whatever the number of `#`.
fn trie_match<'a>(root: &'a TrieNode, tokens: &[&str], out: &mut Vec<&'a FanoutTarget>) {
    let mut reached = Reached::default();
    reached.add(root, false);
    let mut rest_taken = HashSet::new();
    for token in tokens {
        let current = std::mem::take(&mut reached.nodes);
        reached.seen.clear();
        for &(node, _) in &current {
            if rest_taken.insert(std::ptr::from_ref(node)) {
                out.extend(node.rest.iter());
            }
        }
        for &(node, sticky) in &current {
            if sticky {
                reached.add(node, true);
            }
            if let Some(star) = &node.star {
                reached.add(star, false);
            }
            if let Some(child) = node.literal.get(*token) {
                reached.add(child, false);
            }
        }
        if reached.nodes.is_empty() {
            return;
        }
    }
    for (node, _) in reached.nodes {
        out.extend(node.here.iter());
    }
}

/// A set of reached trie nodes, closed under `#` (a node's `#` child is reached with it, without a token).
#[derive(Default)]
struct Reached<'a> {
    /// Each node with whether it was reached through `#` (and so stays reached).
    nodes: Vec<(&'a TrieNode, bool)>,
    seen: HashSet<(*const TrieNode, bool)>,
}

impl<'a> Reached<'a> {
    fn add(&mut self, node: &'a TrieNode, sticky: bool) {
        let mut next = Some((node, sticky));
        while let Some((node, sticky)) = next.take() {
            if !self.seen.insert((std::ptr::from_ref(node), sticky)) {
                return;
            }
            self.nodes.push((node, sticky));
            next = node.hash.as_deref().map(|hash| (hash, true));
        }
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

    /// Calls `each` once per pattern subscription (fanout, named group or durable binding) that matches `topic` (exact and
    /// wildcard).
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
