//! Per-node network namespaces, so partitions are real packet drops.
//!
//! Each node gets its own namespace and address. A veth pair joins it to a
//! bridge in the harness's namespace, and the bridge holds the subnet's
//! first address, so the harness reaches every node directly. A partition
//! is a set of blackhole routes inside the namespaces: packets to a node on
//! the other side are dropped, on established connections too.
//!
//! Packet faults (loss with nftables, delay with netem) live in [`packet`]
//! and are applied per node here.
//!
//! Needs root and `ip` (iproute2). [`Network::probe`] says whether this
//! machine allows it. Everything created is removed when the `Network` is
//! dropped, also after an error or Ctrl-C (the runtime drops it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub mod packet;

/// Each node's interface inside its namespace.
const IFACE: &str = "eth0";

#[derive(Debug)]
pub struct Network {
    bridge: String,
    prefix: String,
    /// The subnet's first three octets, e.g. `10.251.7`.
    subnet: String,
    /// Node name -> (namespace, address).
    nodes: std::sync::Mutex<BTreeMap<String, (String, String)>>,
    /// Which packet faults work here, probed when the network is made.
    pub packet: packet::Capabilities,
    /// Nodes that carry a packet fault now: healing touches only these, so
    /// a run that never applied one needs neither `nft` nor `tc`.
    faulted: std::sync::Mutex<BTreeSet<String>>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Network {
    /// `Ok` if this machine can make network namespaces; else why not.
    pub fn probe() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let name = format!("rrmprobe{}", std::process::id());
        ip(&["netns", "add", &name]).map_err(|e| format!("{e:#}"))?;
        let _ = ip(&["netns", "del", &name]);
        Ok(())
    }

    /// A bridge and an empty subnet, named after this process and a count
    /// (a `compare` makes one network per run, and the kernel removes the
    /// last one's interfaces lazily).
    pub fn create() -> Result<Network> {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100;
        let pid = std::process::id();
        let net = Network {
            bridge: format!("rrm{:05}b{k}", pid % 100_000),
            prefix: format!("rrm{pid}-{k}"),
            subnet: format!("10.{}.{}", 250 + pid % 5, (pid / 5 + k * 37) % 256),
            nodes: Default::default(),
            packet: packet::Capabilities::probe(),
            faulted: Default::default(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", net.subnet),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// Adds node `name` in its own namespace; answers its address.
    pub fn add_node(&self, name: &str) -> Result<String> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, addr)) = nodes.get(name) {
            return Ok(addr.clone());
        }
        let i = nodes.len() + 10;
        if i > 250 {
            bail!("too many nodes for one /24");
        }
        let ns = format!("{}-{name}", self.prefix);
        let veth = format!("{}v{i}", self.bridge);
        let addr = format!("{}.{i}", self.subnet);
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", IFACE, "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            IFACE,
        ])?;
        ip(&["-n", &ns, "link", "set", IFACE, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        nodes.insert(name.to_string(), (ns, addr.clone()));
        Ok(addr)
    }

    /// The command that runs `program` inside node `name`'s namespace.
    pub fn command(&self, name: &str, program: &std::path::Path) -> Command {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        match nodes.get(name) {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "network namespaces: one per node on bridge {} ({}.0/24)",
            self.bridge, self.subnet
        )
    }

    /// Cuts every link between nodes of different `sides` (a node in no
    /// side keeps its links). `grudges`: node -> nodes it cannot reach.
    pub fn partition(&self, grudges: &BTreeMap<String, BTreeSet<String>>) -> Result<()> {
        self.heal()?;
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for (from, blocked) in grudges {
            let Some((ns, _)) = nodes.get(from) else {
                continue;
            };
            for to in blocked {
                if let Some((_, addr)) = nodes.get(to) {
                    ip(&["-n", ns, "route", "add", "blackhole", &format!("{addr}/32")])?;
                }
            }
        }
        Ok(())
    }

    /// Removes every blackhole route.
    pub fn heal(&self) -> Result<()> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for (ns, _) in nodes.values() {
            ip(&["-n", ns, "route", "flush", "type", "blackhole"])?;
        }
        Ok(())
    }
}

/// Packet faults on nodes' interfaces.
impl Network {
    /// `(name, namespace)` of each of `names` that is a node here.
    fn namespaces(&self, names: &[String]) -> Vec<(String, String)> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        names
            .iter()
            .filter_map(|n| nodes.get(n).map(|(ns, _)| (n.clone(), ns.clone())))
            .collect()
    }

    /// `percent`% of packets lost both ways on each of `names`.
    pub fn packet_loss(&self, names: &[String], percent: u8) -> Result<()> {
        for (name, ns) in self.namespaces(names) {
            self.mark_faulted(&name);
            packet::set_loss(&ns, IFACE, percent)?;
        }
        Ok(())
    }

    /// `ms` of delay on each of `names` (needs netem: see `self.packet`).
    pub fn packet_delay(&self, names: &[String], ms: u64) -> Result<()> {
        for (name, ns) in self.namespaces(names) {
            self.mark_faulted(&name);
            packet::set_delay(&ns, IFACE, ms)?;
        }
        Ok(())
    }

    /// Marked before the fault is applied, so a fault that half-applied
    /// and then failed is still healed.
    fn mark_faulted(&self, name: &str) {
        self.faulted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    /// Removes every packet fault applied so far; nothing to do (and no
    /// tool needed) when none was.
    pub fn heal_packets(&self) -> Result<()> {
        let faulted: Vec<String> = {
            let f = self.faulted.lock().unwrap_or_else(|p| p.into_inner());
            f.iter().cloned().collect()
        };
        // Every node is tried; a node that could not be healed stays marked
        // (for the next heal) and the first error is answered.
        let mut first_error = None;
        for (name, ns) in self.namespaces(&faulted) {
            if let Err(e) = packet::clear_loss(&ns) {
                first_error.get_or_insert(e);
                continue;
            }
            if self.packet.delay.is_ok() {
                packet::clear_delay(&ns, IFACE);
            }
            self.faulted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Node `name`'s loss table as nft lists it, if it has one.
    pub fn packet_rules(&self, name: &str) -> Option<String> {
        let (_, ns) = self.namespaces(&[name.to_string()]).pop()?;
        packet::list_loss(&ns)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for (ns, _) in nodes.values() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("jepsen: cleaning up: {e:#}");
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("jepsen: cleaning up: {e:#}");
        }
    }
}

/// Grudges for a partition into `sides`: every node cannot reach the nodes
/// of the other sides. With `bridge`, that node reaches both sides.
pub fn grudges(sides: &[Vec<String>], bridge: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, side) in sides.iter().enumerate() {
        for a in side {
            for (j, other) in sides.iter().enumerate() {
                if i == j {
                    continue;
                }
                for b in other {
                    if Some(a.as_str()) != bridge && Some(b.as_str()) != bridge {
                        out.entry(a.clone()).or_default().insert(b.clone());
                    }
                }
            }
        }
    }
    out
}

/// A majorities ring: node `i` reaches only its nearest neighbours on a
/// ring, enough of them to see a majority with itself; every node sees a
/// different majority.
pub fn ring(nodes: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let n = nodes.len();
    let reach = n / 2; // neighbours on each side, together with itself: a majority
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in 0..n {
        for j in 0..n {
            let d = (i + n - j) % n;
            let dist = d.min(n - d);
            if i != j && dist > reach.div_ceil(2) {
                out.entry(nodes[i].clone())
                    .or_default()
                    .insert(nodes[j].clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn halves_cut_every_cross_link_and_a_bridge_keeps_its_own() {
        let g = grudges(&[names(&["a", "b"]), names(&["c", "d"])], None);
        assert_eq!(g["a"], BTreeSet::from(["c".to_string(), "d".to_string()]));
        assert_eq!(g["d"], BTreeSet::from(["a".to_string(), "b".to_string()]));
        let b = grudges(&[names(&["a", "m"]), names(&["m", "c"])], Some("m"));
        assert!(!b.contains_key("m"));
        assert_eq!(b["a"], BTreeSet::from(["c".to_string()]));
    }

    /// Root only: loss goes on a node's interface, really drops packets,
    /// and comes off again.
    #[test]
    fn packet_loss_goes_on_and_comes_off_a_nodes_interface() {
        if let Err(why) = Network::probe() {
            println!("skipped: network namespaces unavailable ({why})");
            return;
        }
        // Not installed is a skip (scripts/test installs it); installed
        // but not working is a failure.
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("skipped: nft not installed (Debian package nftables)");
            return;
        }
        let net = Network::create().expect("a bridge");
        if let Err(why) = &net.packet.loss {
            panic!("nftables does not work here ({why})");
        }
        let addr = net.add_node("a").expect("a node");
        assert_eq!(net.packet_rules("a"), None);
        net.packet_loss(&names(&["a"]), 50).expect("loss on");
        let rules = net.packet_rules("a").expect("a loss table");
        assert!(rules.contains("numgen random mod 100 < 50"), "{rules}");
        // 200 datagrams at the node: about half are dropped on the way in.
        let sock = std::net::UdpSocket::bind(format!("{}.1:0", net.subnet)).expect("udp");
        for _ in 0..200 {
            let _ = sock.send_to(b"x", format!("{addr}:9"));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let rules = net.packet_rules("a").expect("a loss table");
        let dropped: u64 = rules
            .split("counter packets ")
            .skip(1)
            .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        assert!((20..=180).contains(&dropped), "dropped {dropped}: {rules}");
        net.packet_loss(&names(&["a"]), 20).expect("loss changed");
        let rules = net.packet_rules("a").expect("a loss table");
        assert_eq!(rules.matches("numgen").count(), 2, "{rules}");
        net.heal_packets().expect("loss off");
        assert_eq!(net.packet_rules("a"), None);
    }

    /// A directory holding only `ip`, to stand as the whole PATH: a
    /// machine without nftables (or tc).
    fn path_with_ip_only() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ip = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("ip"))
            .find(|p| p.exists())
            .expect("ip (iproute2) on PATH");
        std::os::unix::fs::symlink(ip, dir.path().join("ip")).expect("a link to ip");
        dir
    }

    /// Root only. The first-run bug: a run without packet faults healed
    /// them anyway, and died where `nft` is not installed.
    #[test]
    fn healing_needs_no_packet_tools_when_no_packet_fault_was_applied() {
        if let Err(why) = Network::probe() {
            println!("skipped: network namespaces unavailable ({why})");
            return;
        }
        let bin = path_with_ip_only();
        // nextest runs each test in its own process: PATH is ours alone.
        std::env::set_var("PATH", bin.path());
        let net = Network::create().expect("a bridge");
        assert!(net.packet.loss.is_err(), "nft must be hidden here");
        net.add_node("a").expect("a node");
        net.add_node("b").expect("a node");
        net.partition(&grudges(&[names(&["a"]), names(&["b"])], None))
            .expect("a partition needs only ip");
        net.heal().expect("healed");
        net.heal_packets()
            .expect("no packet fault was applied: nothing to heal, no nft needed");
    }

    #[test]
    fn a_ring_of_five_lets_each_node_see_a_majority() {
        let nodes = names(&["1", "2", "3", "4", "5"]);
        let g = ring(&nodes);
        for n in &nodes {
            let blocked = g.get(n).map_or(0, |s| s.len());
            // Sees itself and two others: 3 of 5.
            assert_eq!(5 - blocked, 3, "{n}: {g:?}");
        }
        // Node 1 and node 3 see different majorities.
        assert_ne!(g["1"], g["3"]);
    }
}
