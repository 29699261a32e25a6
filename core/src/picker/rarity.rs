//! The rarity index: the rarest piece a peer has that could be started, found without a
//! scan of every piece.

/// A leaf of [`RarityTree`] for a piece that cannot be started.
pub(super) const DEAD: u32 = u32::MAX;

/// A tournament tree over pieces in tie-break order (leaf `r` is the piece of rank `r` in
/// the random permutation). A leaf holds the piece's availability while the piece could be
/// started (wanted, missing, not partial), [`DEAD`] otherwise; an inner node holds the least
/// value below it. The rarest startable piece a peer has is then the leftmost least leaf it
/// has, found by a left-to-right search that skips subtrees no better than the best so far.
#[derive(Debug)]
pub(super) struct RarityTree {
    /// Leaf count: a power of two, at least one.
    pub(super) leaves: usize,
    /// `node[1]` is the root, `node[i]` has children `2i` and `2i + 1`, leaves start at
    /// `node[leaves]`. `node[0]` is unused.
    pub(super) node: Vec<u32>,
}

impl RarityTree {
    pub(super) fn new(len: usize) -> Self {
        let leaves = len.next_power_of_two();
        RarityTree {
            leaves,
            node: vec![DEAD; 2 * leaves],
        }
    }

    /// Sets leaf `rank` and the minima above it. O(log n).
    pub(super) fn set(&mut self, rank: usize, value: u32) {
        let mut i = self.leaves + rank;
        if self.node[i] == value {
            return;
        }
        self.node[i] = value;
        while i > 1 {
            i /= 2;
            let min = self.node[2 * i].min(self.node[2 * i + 1]);
            if self.node[i] == min {
                break;
            }
            self.node[i] = min;
        }
    }

    /// Sets leaf `rank` only; [`RarityTree::rebuild`] must follow.
    pub(super) fn set_leaf(&mut self, rank: usize, value: u32) {
        self.node[self.leaves + rank] = value;
    }

    /// Recomputes every inner node. O(n).
    pub(super) fn rebuild(&mut self) {
        for i in (1..self.leaves).rev() {
            self.node[i] = self.node[2 * i].min(self.node[2 * i + 1]);
        }
    }

    /// The rank of the leftmost least live leaf that `accept` takes. Gives up with `Err`
    /// after visiting `budget` nodes (when the ranks `accept` takes are scattered among
    /// better ones it rejects, a scan of candidates is cheaper).
    pub(super) fn find(
        &self,
        accept: impl Fn(usize) -> bool,
        budget: usize,
    ) -> Result<Option<usize>, ()> {
        let mut best: Option<(u32, usize)> = None;
        // Depth-first, left child first: leaves come in rank order, so a subtree whose
        // least value is no better than the best found cannot hold a better leaf.
        // At most one pending right sibling per level plus the node at hand: no allocation.
        let mut stack = [0usize; 2 * usize::BITS as usize];
        stack[0] = 1;
        let mut len = 1;
        let mut visits = 0;
        while len > 0 {
            len -= 1;
            let i = stack[len];
            let value = self.node[i];
            if value == DEAD || best.is_some_and(|(b, _)| value >= b) {
                continue;
            }
            visits += 1;
            if visits > budget {
                return Err(());
            }
            if i >= self.leaves {
                if accept(i - self.leaves) {
                    best = Some((value, i - self.leaves));
                }
            } else {
                stack[len] = 2 * i + 1;
                stack[len + 1] = 2 * i;
                len += 2;
            }
        }
        Ok(best.map(|(_, rank)| rank))
    }
}
