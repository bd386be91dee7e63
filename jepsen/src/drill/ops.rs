//! The destructive steps of a drill, done to the local cluster the drill
//! started, or by the operator's own commands on an existing cluster.
//!
//! Every step goes through [`Operator`], which remembers what is still to
//! be undone (a paused, isolated or stopped node), so an abort (Ctrl-C, an
//! error) can heal it before the drill exits. In a dry run every step is
//! printed and nothing is done.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cluster::LocalCluster;

/// The fault a failover round puts on the RM leader.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL the leader; restart it once the cluster has recovered.
    Kill,
    /// SIGSTOP the leader for `--pause-ms`, then SIGCONT.
    Pause,
    /// Cut the leader off from the other RMs for `--partition-ms`.
    Partition,
    /// Graceful hand-over: the leader's step-down admin call.
    StepDown,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::StepDown => "step-down",
        }
    }
}

/// The operator's commands for an existing cluster. Each is run with
/// `sh -c`, with `{node}`, `{addr}`, `{host}` and `{port}` filled in.
#[derive(clap::Args, Debug, Clone, Default, Serialize)]
pub struct Commands {
    /// Kills an RM hard, e.g. `systemctl kill -s KILL raft-rm@{node}`.
    #[arg(long)]
    pub kill_cmd: Option<String>,
    /// Starts a killed or stopped RM again, with its data.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// Freezes an RM, e.g. `systemctl kill -s STOP raft-rm@{node}`.
    #[arg(long)]
    pub pause_cmd: Option<String>,
    /// Thaws a frozen RM.
    #[arg(long)]
    pub resume_cmd: Option<String>,
    /// Cuts an RM off from its peers (firewall rules on its host).
    #[arg(long)]
    pub isolate_cmd: Option<String>,
    /// Undoes `--isolate-cmd`.
    #[arg(long)]
    pub heal_cmd: Option<String>,
    /// Stops an RM gracefully (SIGTERM), for the rolling restart.
    #[arg(long)]
    pub stop_cmd: Option<String>,
}

impl Commands {
    /// The commands a fault needs, by flag name, that are missing.
    pub fn missing_for(&self, fault: Fault) -> Vec<&'static str> {
        let need: &[(&str, &Option<String>)] = match fault {
            Fault::Kill => &[
                ("--kill-cmd", &self.kill_cmd),
                ("--restart-cmd", &self.restart_cmd),
            ],
            Fault::Pause => &[
                ("--pause-cmd", &self.pause_cmd),
                ("--resume-cmd", &self.resume_cmd),
            ],
            Fault::Partition => &[
                ("--isolate-cmd", &self.isolate_cmd),
                ("--heal-cmd", &self.heal_cmd),
            ],
            Fault::StepDown => &[],
        };
        need.iter()
            .filter(|(_, c)| c.is_none())
            .map(|(n, _)| *n)
            .collect()
    }

    /// The commands a rolling restart needs that are missing.
    pub fn missing_for_restart(&self) -> Vec<&'static str> {
        [
            ("--stop-cmd", &self.stop_cmd),
            ("--restart-cmd", &self.restart_cmd),
        ]
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| *n)
        .collect()
    }
}

/// What a node is left in until it is healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    Restart,
    Resume,
    Heal,
}

enum Nodes {
    /// A cluster this drill started; dropped (killed) at the end.
    Local(Box<LocalCluster>),
    /// Somebody else's cluster, reached through `commands`.
    Existing {
        addrs: BTreeMap<u64, String>,
        commands: Commands,
    },
}

/// Does a drill's destructive steps and remembers what to undo.
pub struct Operator {
    nodes: Nodes,
    dry_run: bool,
    pending: BTreeMap<u64, Undo>,
}

/// An operator's command gets this long before the drill gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Operator {
    pub fn local(cluster: LocalCluster) -> Operator {
        Operator {
            nodes: Nodes::Local(Box::new(cluster)),
            dry_run: false,
            pending: BTreeMap::new(),
        }
    }

    pub fn existing(addrs: BTreeMap<u64, String>, commands: Commands, dry_run: bool) -> Operator {
        Operator {
            nodes: Nodes::Existing { addrs, commands },
            dry_run,
            pending: BTreeMap::new(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.nodes, Nodes::Local(_))
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn addrs(&self) -> &BTreeMap<u64, String> {
        match &self.nodes {
            Nodes::Local(c) => &c.addrs,
            Nodes::Existing { addrs, .. } => addrs,
        }
    }

    pub fn addr_list(&self) -> Vec<String> {
        self.addrs().values().cloned().collect()
    }

    /// Whether `fault` can be done here; else why not.
    pub fn check(&self, fault: Fault) -> Result<()> {
        match &self.nodes {
            Nodes::Local(c) if fault == Fault::Partition && c.net().is_none() => {
                bail!("the partition drill needs per-node network namespaces (root and `ip netns`)")
            }
            Nodes::Local(_) => Ok(()),
            Nodes::Existing { commands, .. } => {
                let missing = commands.missing_for(fault);
                if missing.is_empty() {
                    Ok(())
                } else {
                    bail!(
                        "the {} drill on an existing cluster needs {}",
                        fault.name(),
                        missing.join(" and ")
                    )
                }
            }
        }
    }

    /// Puts `fault` on node `id` (not step-down: that is an API call).
    pub async fn inject(&mut self, fault: Fault, id: u64) -> Result<()> {
        match fault {
            Fault::Kill => {
                self.fault_step(
                    id,
                    Undo::Restart,
                    "kill",
                    |c| c.kill_cmd.as_deref(),
                    |c, id| {
                        c.kill(id);
                        Ok(())
                    },
                )
                .await
            }
            Fault::Pause => {
                self.fault_step(
                    id,
                    Undo::Resume,
                    "pause",
                    |c| c.pause_cmd.as_deref(),
                    |c, id| {
                        if c.pause(&crate::cluster::Target::Rm(id)) {
                            Ok(())
                        } else {
                            bail!("node {id} is not running")
                        }
                    },
                )
                .await
            }
            Fault::Partition => {
                self.fault_step(
                    id,
                    Undo::Heal,
                    "isolate",
                    |c| c.isolate_cmd.as_deref(),
                    isolate_local,
                )
                .await
            }
            Fault::StepDown => Ok(()),
        }
    }

    /// A step that leaves node `id` needing `undo`. The undo is recorded
    /// first, so an abort in the middle of the command still undoes
    /// whatever part of it took effect; a step that fails is forgotten.
    async fn fault_step(
        &mut self,
        id: u64,
        undo: Undo,
        what: &str,
        command: impl Fn(&Commands) -> Option<&str>,
        local: impl FnOnce(&mut LocalCluster, u64) -> Result<()>,
    ) -> Result<()> {
        self.pending.insert(id, undo);
        let done = self.step(id, what, command, local).await;
        if done.is_err() {
            self.pending.remove(&id);
        }
        done
    }

    /// Undoes whatever fault node `id` is still under.
    pub async fn heal(&mut self, id: u64) -> Result<()> {
        let Some(undo) = self.pending.get(&id).copied() else {
            return Ok(());
        };
        match undo {
            Undo::Restart => {
                self.step(
                    id,
                    "restart",
                    |c| c.restart_cmd.as_deref(),
                    |c, id| c.launch(id),
                )
                .await?
            }
            Undo::Resume => {
                self.step(
                    id,
                    "resume",
                    |c| c.resume_cmd.as_deref(),
                    |c, id| {
                        c.resume(&crate::cluster::Target::Rm(id));
                        Ok(())
                    },
                )
                .await?
            }
            Undo::Heal => {
                self.step(
                    id,
                    "heal",
                    |c| c.heal_cmd.as_deref(),
                    |c, _| match c.net() {
                        Some(net) => net.heal(),
                        None => Ok(()),
                    },
                )
                .await?
            }
        }
        self.pending.remove(&id);
        Ok(())
    }

    /// Heals every node still under a fault; answers what it healed.
    pub async fn heal_all(&mut self) -> Vec<String> {
        let mut healed = Vec::new();
        for id in self.pending.keys().copied().collect::<Vec<_>>() {
            match self.heal(id).await {
                Ok(()) => healed.push(format!("node {id} healed")),
                Err(e) => healed.push(format!("node {id} NOT healed: {e:#}")),
            }
        }
        healed
    }

    /// Stops node `id` gracefully (SIGTERM); [`Operator::heal`] restarts it.
    pub async fn stop(&mut self, id: u64) -> Result<()> {
        self.fault_step(
            id,
            Undo::Restart,
            "stop",
            |c| c.stop_cmd.as_deref(),
            |c, id| {
                c.stop_node(id);
                Ok(())
            },
        )
        .await
    }

    /// One step on node `id`: the operator's command, or `local` on the
    /// drill's own cluster; in a dry run, only printed.
    async fn step(
        &mut self,
        id: u64,
        what: &str,
        command: impl Fn(&Commands) -> Option<&str>,
        local: impl FnOnce(&mut LocalCluster, u64) -> Result<()>,
    ) -> Result<()> {
        let dry_run = self.dry_run;
        match &mut self.nodes {
            Nodes::Local(c) => local(c, id).with_context(|| format!("{what} node {id}")),
            Nodes::Existing { addrs, commands } => {
                let Some(template) = command(commands) else {
                    bail!("no command to {what} a node");
                };
                let addr = addrs.get(&id).map(String::as_str).unwrap_or_default();
                let cmd = fill(template, id, addr);
                if dry_run {
                    println!("  would {what} node {id}: {cmd}");
                    return Ok(());
                }
                println!("  {what} node {id}: {cmd}");
                run_command(&cmd)
                    .await
                    .with_context(|| format!("{what} node {id}"))
            }
        }
    }
}

/// Cuts node `id` off from every other RM (both ways); the harness still
/// reaches it through the bridge, so it can watch it.
fn isolate_local(c: &mut LocalCluster, id: u64) -> Result<()> {
    let Some(net) = c.net() else {
        bail!("no network namespaces");
    };
    let me = format!("n{id}");
    let others: Vec<String> = c
        .addrs
        .keys()
        .filter(|i| **i != id)
        .map(|i| format!("n{i}"))
        .collect();
    net.partition(&crate::netns::grudges(&[vec![me], others], None))
}

/// `template` with `{node}`, `{addr}`, `{host}` and `{port}` filled in.
pub fn fill(template: &str, id: u64, addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
    template
        .replace("{node}", &id.to_string())
        .replace("{addr}", addr)
        .replace("{host}", host)
        .replace("{port}", port)
}

/// Runs `cmd` with `sh -c`; fails on a non-zero status or after
/// [`COMMAND_TIMEOUT`] (a command that hangs, for example a `pkill -f`
/// pattern that stopped its own shell, must not hang the drill).
async fn run_command(cmd: &str) -> Result<()> {
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting `{cmd}`"))?;
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => bail!("`{cmd}` exited with {status}"),
        Ok(Err(e)) => Err(e).with_context(|| format!("waiting for `{cmd}`")),
        Err(_) => bail!(
            "`{cmd}` did not finish within {} s (does a `pkill -f` pattern match the command's own shell? write its first letter as [x])",
            COMMAND_TIMEOUT.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_from_the_node_and_its_address() {
        assert_eq!(
            fill(
                "ssh {host} systemctl kill raft-rm@{node} # {addr} {port}",
                2,
                "10.0.0.2:7000"
            ),
            "ssh 10.0.0.2 systemctl kill raft-rm@2 # 10.0.0.2:7000 7000"
        );
    }

    #[test]
    fn each_fault_names_the_commands_it_lacks() {
        let c = Commands {
            kill_cmd: Some("k".into()),
            ..Default::default()
        };
        assert_eq!(c.missing_for(Fault::Kill), vec!["--restart-cmd"]);
        assert_eq!(
            c.missing_for(Fault::Pause),
            vec!["--pause-cmd", "--resume-cmd"]
        );
        assert!(c.missing_for(Fault::StepDown).is_empty());
        assert_eq!(c.missing_for_restart(), vec!["--stop-cmd", "--restart-cmd"]);
    }

    #[tokio::test]
    async fn a_failing_command_is_an_error() {
        assert!(run_command("true").await.is_ok());
        let e = run_command("exit 3").await.unwrap_err();
        assert!(format!("{e:#}").contains("exit"), "{e:#}");
    }

    #[tokio::test]
    async fn a_dry_run_does_nothing_and_remembers_what_to_heal() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("touched");
        let cmd = format!("touch {}", marker.display());
        let commands = Commands {
            pause_cmd: Some(cmd.clone()),
            resume_cmd: Some(cmd),
            ..Default::default()
        };
        let addrs = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
        let mut dry = Operator::existing(addrs.clone(), commands.clone(), true);
        dry.inject(Fault::Pause, 1).await.unwrap();
        assert!(!marker.exists(), "a dry run ran the command");
        let mut real = Operator::existing(addrs, commands, false);
        real.inject(Fault::Pause, 1).await.unwrap();
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
        assert_eq!(real.heal_all().await, vec!["node 1 healed".to_string()]);
        assert!(marker.exists(), "healing did not resume the node");
        assert!(real.heal_all().await.is_empty(), "healed twice");
    }
}
