//! Packet faults inside one node's network namespace.
//!
//! Loss is an nftables table in the namespace: on the node's interface, a
//! rule in the input chain and one in the output chain each drop a random
//! `N`% of packets (`numgen random mod 100 < N drop`), so both directions
//! lose. Delay needs the kernel's `netem` qdisc (`tc ... netem delay`); many
//! kernels (this machine's among them) are built without it, so
//! [`Capabilities::probe`] tries both in a scratch namespace at the start of
//! a run and the run reports what it found.
//!
//! Everything here runs `ip netns exec <ns> nft|tc`: nothing touches the
//! harness's own namespace.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The nftables table that holds a node's loss rules (one per namespace).
pub const TABLE: &str = "jepsen_packet";

/// What this machine allows, found by trying it.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// `Ok`: nftables works in a namespace (packet loss); else why not.
    pub loss: Result<(), String>,
    /// `Ok`: the `netem` qdisc works (packet delay); else why not.
    pub delay: Result<(), String>,
}

impl Capabilities {
    /// Nothing possible, for the same reason (e.g. no namespaces).
    pub fn none(why: &str) -> Capabilities {
        Capabilities {
            loss: Err(why.to_string()),
            delay: Err(why.to_string()),
        }
    }

    /// Tries nftables and netem in a scratch namespace, removed after.
    pub fn probe() -> Capabilities {
        let ns = format!("rrmpk{}", std::process::id());
        if let Err(e) = run(Command::new("ip").args(["netns", "add", &ns]), None) {
            return Capabilities::none(&format!("{e:#}"));
        }
        let loss = (|| {
            if Command::new("nft").arg("--version").output().is_err() {
                bail!("nft not found (Debian package nftables)");
            }
            set_loss(&ns, "lo", 20)?;
            clear_loss(&ns)
        })()
        .map_err(|e| format!("{e:#}"));
        let delay = set_delay(&ns, "lo", 1)
            .map_err(|e| format!("{e:#} (the kernel lacks the netem qdisc: CONFIG_NET_SCH_NETEM)"));
        let _ = run(Command::new("ip").args(["netns", "del", &ns]), None);
        Capabilities { loss, delay }
    }

    /// For `results.json`: each fault, and whether and how it runs.
    pub fn report(&self) -> serde_json::Value {
        let one = |r: &Result<(), String>, how: &str| match r {
            Ok(()) => serde_json::json!({"available": true, "how": how}),
            Err(why) => serde_json::json!({"available": false, "why": why}),
        };
        serde_json::json!({
            "loss": one(&self.loss, "nftables in each node's namespace: numgen random mod 100 < N drop, input and output"),
            "delay": one(&self.delay, "tc netem delay on each node's interface"),
        })
    }
}

/// The nftables script that makes `iface` lose `percent`% of packets in
/// each direction. It replaces any earlier loss table atomically: the empty
/// `table` line makes the `delete` valid when there is none yet.
pub fn loss_script(iface: &str, percent: u8) -> String {
    format!(
        "table inet {TABLE} {{}}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tchain input {{ type filter hook input priority 0; policy accept; \
         iifname \"{iface}\" numgen random mod 100 < {percent} counter drop; }}\n\
         \tchain output {{ type filter hook output priority 0; policy accept; \
         oifname \"{iface}\" numgen random mod 100 < {percent} counter drop; }}\n\
         }}\n"
    )
}

/// `percent`% loss both ways on `iface` inside namespace `ns`.
pub fn set_loss(ns: &str, iface: &str, percent: u8) -> Result<()> {
    if percent > 100 {
        bail!("packet loss of {percent}% is not a percentage");
    }
    run(
        Command::new("ip").args(["netns", "exec", ns, "nft", "-f", "-"]),
        Some(&loss_script(iface, percent)),
    )
    .with_context(|| format!("packet loss in namespace {ns}"))
}

/// Removes the loss table of namespace `ns` (none there is fine).
pub fn clear_loss(ns: &str) -> Result<()> {
    let script = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
    run(
        Command::new("ip").args(["netns", "exec", ns, "nft", "-f", "-"]),
        Some(&script),
    )
    .with_context(|| format!("removing packet loss in namespace {ns}"))
}

/// The loss table of namespace `ns` as nft lists it, or `None` if it has
/// none (for tests and the log).
pub fn list_loss(ns: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "table", "inet", TABLE])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ms` of delay (±25%) on `iface` inside `ns`: needs netem.
pub fn set_delay(ns: &str, iface: &str, ms: u64) -> Result<()> {
    let (delay, jitter) = (format!("{ms}ms"), format!("{}ms", ms / 4));
    run(
        Command::new("ip").args([
            "netns", "exec", ns, "tc", "qdisc", "replace", "dev", iface, "root", "netem", "delay",
            &delay, &jitter,
        ]),
        None,
    )
    .with_context(|| format!("packet delay in namespace {ns}"))
}

/// Removes any delay from `iface` inside `ns` (none there is fine).
pub fn clear_delay(ns: &str, iface: &str) {
    let _ = Command::new("ip")
        .args([
            "netns", "exec", ns, "tc", "qdisc", "del", "dev", iface, "root",
        ])
        .output();
}

/// Runs `cmd` with `stdin`; its stderr becomes the error.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<()> {
    let program = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {program}"))?;
    if !out.status.success() {
        bail!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_script_drops_both_ways_on_the_interface_only() {
        let s = loss_script("eth0", 20);
        assert!(s.contains("iifname \"eth0\" numgen random mod 100 < 20 counter drop"));
        assert!(s.contains("oifname \"eth0\" numgen random mod 100 < 20 counter drop"));
        assert!(s.contains("hook input") && s.contains("hook output"));
        // Replaces an earlier table instead of adding a second rule.
        assert!(s.find("delete table").unwrap() < s.rfind("table inet").unwrap());
    }
}
