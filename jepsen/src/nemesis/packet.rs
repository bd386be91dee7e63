//! The packet nemesis: loss (nftables) or delay (netem, where the kernel
//! has it) on one targeted node or on all of them, for a window.
//!
//! The plan is data, computed from the schedule's draw; [`apply`] and
//! [`heal`] are the only parts that touch the network.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::netns::Network;

/// Loss rates tried, in percent of packets per direction.
pub const LOSS_PERCENT: [u8; 2] = [20, 50];

/// Delays tried (± a quarter), where netem exists.
pub const DELAY_MS: [u64; 2] = [50, 200];

/// One packet fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PacketFault {
    Loss { percent: u8, nodes: Vec<String> },
    Delay { ms: u64, nodes: Vec<String> },
}

impl PacketFault {
    /// What a plot's shading and the fault windows call it.
    pub fn label(&self) -> String {
        match self {
            PacketFault::Loss { percent, nodes } => format!("loss {percent}% {}", nodes.join(",")),
            PacketFault::Delay { ms, nodes } => format!("delay {ms}ms {}", nodes.join(",")),
        }
    }
}

/// The fault for draw `pick`: on `target` alone or on all `targeted`
/// nodes, loss at 20% or 50%, or (only when `delay_possible`) a delay.
pub fn plan(pick: usize, target: &str, targeted: &[String], delay_possible: bool) -> PacketFault {
    let nodes = if pick.is_multiple_of(2) || targeted.is_empty() {
        vec![target.to_string()]
    } else {
        targeted.to_vec()
    };
    let level = (pick / 2) % 2;
    if delay_possible && (pick / 4) % 2 == 1 {
        PacketFault::Delay {
            ms: DELAY_MS[level],
            nodes,
        }
    } else {
        PacketFault::Loss {
            percent: LOSS_PERCENT[level],
            nodes,
        }
    }
}

/// Puts `fault` on the network.
pub fn apply(net: &Network, fault: &PacketFault) -> Result<()> {
    match fault {
        PacketFault::Loss { percent, nodes } => net.packet_loss(nodes, *percent),
        PacketFault::Delay { ms, nodes } => net.packet_delay(nodes, *ms),
    }
    .with_context(|| format!("packet fault {}", fault.label()))
}

/// Takes every packet fault off.
pub fn heal(net: &Network) -> Result<()> {
    net.heal_packets().context("healing packet faults")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn draws_cover_one_node_all_nodes_and_both_rates_but_no_delay_without_netem() {
        let all = names(&["n1", "n2", "n3"]);
        let plans: Vec<PacketFault> = (0..8).map(|p| plan(p, "n2", &all, false)).collect();
        assert!(plans.contains(&PacketFault::Loss {
            percent: 20,
            nodes: names(&["n2"])
        }));
        assert!(plans.contains(&PacketFault::Loss {
            percent: 50,
            nodes: all.clone()
        }));
        assert!(plans.iter().all(|p| matches!(p, PacketFault::Loss { .. })));
        let with_netem: Vec<PacketFault> = (0..8).map(|p| plan(p, "n2", &all, true)).collect();
        assert!(with_netem
            .iter()
            .any(|p| matches!(p, PacketFault::Delay { ms: 200, .. })));
    }
}
