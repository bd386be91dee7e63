//! Links this node refuses to use: an outgoing filter, so in-process tests
//! can partition nodes that share one process (the real-process harness cuts
//! real packets instead). Empty, and so inert, in production.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::NodeId;

#[derive(Clone, Debug, Default)]
pub struct LinkFaults {
    cut: Arc<RwLock<BTreeSet<NodeId>>>,
}

impl LinkFaults {
    pub fn is_cut(&self, target: NodeId) -> bool {
        self.cut
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&target)
    }

    pub fn cut(&self, target: NodeId) {
        self.cut
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target);
    }

    pub fn heal_all(&self) {
        self.cut.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
