//! Circles in a directed graph: its strongly connected components of more
//! than one node (Tarjan's algorithm), in a deterministic order.

use std::collections::{BTreeMap, BTreeSet};

/// Every group of two or more nodes in which each node reaches every
/// other, each sorted, in the order of their smallest node.
pub fn circles<N: Ord + Clone>(successors: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    let mut search = Search {
        successors,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in successors.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    let mut found = search.found;
    for component in &mut found {
        component.sort();
    }
    found.sort();
    found
}

struct Search<'a, N> {
    successors: &'a BTreeMap<N, BTreeSet<N>>,
    index: BTreeMap<&'a N, usize>,
    low: BTreeMap<&'a N, usize>,
    stack: Vec<&'a N>,
    on_stack: BTreeSet<&'a N>,
    next: usize,
    found: Vec<Vec<N>>,
}

impl<'a, N: Ord + Clone> Search<'a, N> {
    /// Recursive: a crate's file graph is a few hundred nodes deep at most.
    fn visit(&mut self, node: &'a N) {
        self.index.insert(node, self.next);
        self.low.insert(node, self.next);
        self.next += 1;
        self.stack.push(node);
        self.on_stack.insert(node);
        let successors = self.successors;
        for next in successors.get(node).into_iter().flatten() {
            // Successors missing from the map are sinks; give them an entry.
            let next = successors.get_key_value(next).map_or(next, |(key, _)| key);
            if !self.index.contains_key(next) {
                self.visit(next);
                let low = self.low[node].min(self.low[next]);
                self.low.insert(node, low);
            } else if self.on_stack.contains(next) {
                let low = self.low[node].min(self.index[next]);
                self.low.insert(node, low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(member);
                component.push(member.clone());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                self.found.push(component);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(u32, u32)]) -> BTreeMap<u32, BTreeSet<u32>> {
        let mut g: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for &(a, b) in edges {
            g.entry(a).or_default().insert(b);
            g.entry(b).or_default();
        }
        g
    }

    #[test]
    fn a_chain_has_no_circle() {
        assert!(circles(&graph(&[(1, 2), (2, 3), (1, 3)])).is_empty());
    }

    #[test]
    fn two_files_using_each_other_are_a_circle() {
        assert_eq!(circles(&graph(&[(1, 2), (2, 1), (2, 3)])), vec![vec![1, 2]]);
    }

    #[test]
    fn a_long_loop_is_one_circle_and_separate_loops_are_separate() {
        let g = graph(&[(1, 2), (2, 3), (3, 1), (4, 5), (5, 4), (3, 4)]);
        assert_eq!(circles(&g), vec![vec![1, 2, 3], vec![4, 5]]);
    }
}
