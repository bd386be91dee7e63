//! The probe phase: what this machine allows a run (network namespaces,
//! packet faults, libfaketime), found before anything starts. A fault
//! family it cannot run is skipped and recorded, never an error.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::TestSpec;
use crate::nemesis::{self, Schedule};

/// A requested fault family this machine cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Skipped {
    pub feature: String,
    pub why: String,
}

/// What this machine allows a run, found before anything starts.
pub(super) struct Environment {
    /// Per-node network namespaces, or `None`: loopback.
    pub net: Option<Arc<crate::netns::Network>>,
    /// How the nodes are networked, in words.
    pub network: String,
    pub packet: crate::netns::packet::Capabilities,
    /// libfaketime to preload, when clock faults run.
    pub faketime: Option<PathBuf>,
    /// How clock faults run here, in words.
    pub clock: String,
    /// The spec's schedule less the fault families that cannot run here.
    pub schedule: Schedule,
    pub skipped: Vec<Skipped>,
}

/// Finds what the run may use: namespaces (root and `ip`), `nft` and `tc`
/// for packet faults (tried in a scratch namespace), libfaketime for clock
/// faults. A requested fault family whose tool is missing is skipped and
/// recorded, never an error; a tool is used only by the faults that need it.
pub(super) fn probe_environment(spec: &TestSpec) -> Result<Environment> {
    let mut schedule = spec.schedule.clone();
    let mut skipped = Vec::new();
    let mut skip = |schedule: &mut Schedule, fault: nemesis::Fault, feature: &str, why: &str| {
        if schedule.faults.contains(&fault) {
            schedule.faults.retain(|f| *f != fault);
            skipped.push(Skipped {
                feature: feature.to_string(),
                why: why.to_string(),
            });
        }
    };
    // Namespaces where the machine allows them, else loopback (and then no
    // partitions: they would be a lie).
    let (net, network) = if spec.loopback {
        (
            None,
            "loopback (--loopback): process faults only".to_string(),
        )
    } else {
        match crate::netns::Network::probe() {
            Ok(()) => {
                let n = Arc::new(crate::netns::Network::create()?);
                let d = n.describe();
                (Some(n), d)
            }
            Err(why) => (
                None,
                format!("loopback: network namespaces unavailable ({why}); process faults only"),
            ),
        }
    };
    if net.is_none() {
        skip(
            &mut schedule,
            nemesis::Fault::Partition,
            "partition faults",
            &network,
        );
        skip(
            &mut schedule,
            nemesis::Fault::Asymmetric,
            "asymmetric faults",
            &network,
        );
    }
    if spec.workload == crate::workload::Workload::Semaphore {
        // No coordinators to restart or to be hostile to; and the semaphore
        // model checks rejections against the run's limits, which a
        // reconfigure lowers.
        let why =
            "the semaphore workload has no coordinators, and its model assumes the run's limits";
        for (fault, feature) in [
            (
                nemesis::Fault::RestartCoordinator,
                "restart-coordinator faults",
            ),
            (nemesis::Fault::Hostile, "hostile clients"),
            (nemesis::Fault::Reconfigure, "reconfigure faults"),
        ] {
            skip(&mut schedule, fault, feature, why);
        }
    }
    // Probed in a scratch namespace when the network was made.
    let packet = match &net {
        Some(n) => n.packet.clone(),
        None => crate::netns::packet::Capabilities::none(&network),
    };
    if let Err(why) = &packet.loss {
        skip(&mut schedule, nemesis::Fault::Packet, "packet faults", why);
    }
    let lib = crate::cluster::libfaketime();
    let clock = if lib.exists() {
        "libfaketime preloaded: the clock nemesis shifts one process's wall clock".to_string()
    } else {
        format!(
            "no {} (Debian package faketime): no clock faults",
            lib.display()
        )
    };
    if !lib.exists() {
        skip(&mut schedule, nemesis::Fault::Clock, "clock faults", &clock);
    }
    if schedule.faults.contains(&nemesis::Fault::CrashAt) {
        match nemesis::disk::failpoints_of(&spec.bin_dir) {
            Ok(list) if !list.is_empty() => schedule.failpoints = list,
            Ok(_) => skip(
                &mut schedule,
                nemesis::Fault::CrashAt,
                "crash-at faults",
                "raft-rm lists no failpoints",
            ),
            Err(why) => skip(
                &mut schedule,
                nemesis::Fault::CrashAt,
                "crash-at faults",
                &why,
            ),
        }
    }
    let faketime = schedule
        .faults
        .contains(&nemesis::Fault::Clock)
        .then_some(lib);
    Ok(Environment {
        net,
        network,
        packet,
        faketime,
        clock,
        schedule,
        skipped,
    })
}
