//! A local cluster of real processes: `raft-rm` nodes and, when asked,
//! workers and coordinators, on loopback or each in its own network
//! namespace (see [`crate::netns`]).
//!
//! Each RM logs to `<dir>/node<ID>.log` and keeps its data in `<dir>/n<ID>`;
//! a worker or coordinator logs to `<dir>/<name>.log`, and a worker keeps
//! its revoked fencing tokens in `<dir>/<name>-data`. The cluster shares a
//! generated secret in `<dir>/secret`.
//! Dropping a [`LocalCluster`] SIGKILLs whatever still runs, so a panic or
//! an early return never leaves processes behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::auth::SharedSecret;
use common::http::HttpClient;

use crate::rm_client::RmClient;

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: u64,
    /// First port; node N listens on `base_port + N - 1`. 0 picks free ports.
    pub base_port: u16,
    pub dir: PathBuf,
    /// Where the `raft-rm` binary is.
    pub bin_dir: PathBuf,
    /// Extra flags for every node (timings, snapshot policy).
    pub node_args: Vec<String>,
    /// Per-node network namespaces; `None`: everyone on loopback.
    pub net: Option<std::sync::Arc<crate::netns::Network>>,
    /// libfaketime, preloaded into every process so the clock nemesis can
    /// shift one process's wall clock (never the machine's).
    pub faketime: Option<PathBuf>,
    /// Environment for every process (`FAILPOINTS`: planted bugs).
    pub env: Vec<(String, String)>,
    /// Everything over TLS (see [`crate::tls`]).
    pub tls: bool,
}

/// Where Debian's `faketime` package puts the multi-threaded library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// libfaketime for the clock nemesis: `$JEPSEN_LIBFAKETIME` if set (another
/// build, or a path that does not exist to run without clock faults), else
/// [`LIBFAKETIME`].
pub fn libfaketime() -> PathBuf {
    std::env::var_os("JEPSEN_LIBFAKETIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LIBFAKETIME))
}

/// Where node `name` listens: its own address in its namespace (the same
/// port everywhere), or a loopback port.
fn node_addr(net: Option<&crate::netns::Network>, name: &str, port: Result<u16>) -> Result<String> {
    match net {
        Some(n) => Ok(format!("{}:{}", n.add_node(name)?, port?)),
        None => Ok(format!("127.0.0.1:{}", port?)),
    }
}

/// Workers and coordinators to run beside the RMs.
#[derive(Debug, Clone)]
pub struct DataPlaneSpec {
    pub workers: u64,
    pub coordinators: u64,
    pub worker_memory_bytes: u64,
    /// The resource-groups file the coordinators (and RMs) run with.
    pub resource_groups: PathBuf,
    /// First worker port and first coordinator port; 0 picks free ports.
    pub worker_base_port: u16,
    pub coordinator_base_port: u16,
    /// Extra flags for every worker (e.g. `--heartbeat-ms`).
    pub worker_args: Vec<String>,
}

/// A worker or coordinator process.
pub struct Member {
    pub name: String,
    pub addr: String,
    /// `worker` or `coordinator`.
    pub binary: String,
    args: Vec<String>,
    /// `None` while killed.
    child: Option<Child>,
}

/// A process of the cluster, as nemeses name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Target {
    /// A `raft-rm` node, by id.
    Rm(u64),
    /// A worker or coordinator, by name (`w1`, `c2`).
    Member(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Rm(id) => write!(f, "n{id}"),
            Target::Member(name) => f.write_str(name),
        }
    }
}

pub struct LocalCluster {
    spec: ClusterSpec,
    pub addrs: BTreeMap<u64, String>,
    procs: BTreeMap<u64, Child>,
    /// Workers, then coordinators.
    pub members: Vec<Member>,
    secret_file: PathBuf,
    pub client: RmClient,
    /// The cluster's CA and certificates (`--tls`).
    pki: Option<crate::tls::LocalPki>,
}

/// The directory of the running executable: where cargo puts `raft-rm` too.
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn free_port() -> Result<u16> {
    common::net::unused_loopback_port().context("cannot pick a loopback port")
}

impl LocalCluster {
    pub fn start(spec: ClusterSpec) -> Result<LocalCluster> {
        let bin = spec.bin_dir.join("raft-rm");
        if !bin.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p raft-rm) or pass --bin-dir",
                bin.display()
            );
        }
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("creating {}", spec.dir.display()))?;
        let secret_file = spec.dir.join("secret");
        if !secret_file.exists() {
            let secret = format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            );
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Readable by this user only, like any credential.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&secret_file)
                .and_then(|mut f| f.write_all(secret.as_bytes()))
                .context("writing the cluster secret")?;
        }
        let secret = SharedSecret::from_file(&secret_file)?;
        // Before any client is made: the harness's clients follow it.
        let pki = if spec.tls {
            Some(crate::tls::LocalPki::create(&spec.dir)?)
        } else {
            None
        };
        let mut addrs = BTreeMap::new();
        for id in 1..=spec.nodes {
            let port = if spec.net.is_some() {
                Ok(7000)
            } else if spec.base_port == 0 {
                free_port()
            } else {
                spec.base_port
                    .checked_add(id as u16 - 1)
                    .context("port out of range")
            };
            addrs.insert(id, node_addr(spec.net.as_deref(), &format!("n{id}"), port)?);
        }
        let mut cluster = LocalCluster {
            spec,
            addrs,
            procs: BTreeMap::new(),
            members: Vec::new(),
            secret_file,
            client: RmClient::new(
                HttpClient::new(Some(secret), Duration::from_secs(10))
                    .with_tls(pki.as_ref().map(|p| p.harness_client.clone())),
            ),
            pki,
        };
        for id in 1..=cluster.spec.nodes {
            cluster.launch(id)?;
        }
        Ok(cluster)
    }

    /// An HTTP client carrying the cluster's secret, with its own timeout.
    pub fn internal_http(&self, timeout: Duration) -> Result<HttpClient> {
        let secret = SharedSecret::from_file(&self.secret_file)?;
        Ok(HttpClient::new(Some(secret), timeout)
            .with_tls(self.pki.as_ref().map(|p| p.harness_client.clone())))
    }

    /// The flags that put process `name` (`role`, at `addr`) on TLS: a
    /// certificate issued now for its address. None without `--tls`.
    fn tls_args(
        &self,
        name: &str,
        role: &str,
        addr: &str,
        client_auth: &str,
    ) -> Result<Vec<String>> {
        let Some(pki) = &self.pki else {
            return Ok(Vec::new());
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
        let mut hosts = vec![host];
        if hosts[0] != "127.0.0.1" {
            hosts.push("127.0.0.1".into());
        }
        Ok(pki.issue(name, role, &hosts)?.args(client_auth))
    }

    /// A certificate for `name` in `role` from this cluster's CA
    /// (`--tls`), for a client that calls as that role.
    pub fn tls_issue(&self, name: &str, role: &str) -> Result<crate::tls::Issued> {
        let pki = self
            .pki
            .as_ref()
            .context("this cluster runs without --tls")?;
        pki.issue(name, role, &["127.0.0.1".to_string()])
    }

    /// Issues RM `id` a new certificate and key in place (the same files):
    /// it takes them when it next checks them, or at once on SIGHUP.
    pub fn reissue_rm(&self, id: u64) -> Result<()> {
        let addr = self.addrs.get(&id).context("no such RM")?;
        self.tls_args(&format!("n{id}"), "raft-rm", addr, "required")
            .map(drop)
    }

    /// The CA a client of this cluster must trust, and the user and
    /// password an operator connects with (`--tls`).
    pub fn tls_login(&self) -> Option<(PathBuf, &'static str, String)> {
        self.pki.as_ref().map(|p| {
            (
                p.ca_path(),
                crate::tls::OPERATOR_USER,
                p.operator_password.clone(),
            )
        })
    }

    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    pub fn addr_list(&self) -> Vec<String> {
        self.addrs.values().cloned().collect()
    }

    pub fn launch(&mut self, id: u64) -> Result<()> {
        self.launch_with(id, &[])
    }

    /// [`Self::launch`] with environment variables for this start only
    /// (`RAFT_RM_CRASH_AT`: crash at a failpoint).
    pub fn launch_env(&mut self, id: u64, env: &[(&str, &str)]) -> Result<()> {
        self.launch_full(id, &[], env)
    }

    /// Whether RM `id` has exited on its own (a crash), and how.
    pub fn rm_exit(&mut self, id: u64) -> Option<String> {
        let child = self.procs.get_mut(&id)?;
        let status = child.try_wait().ok()??;
        self.procs.remove(&id);
        Some(status.to_string())
    }

    /// Deletes RM `id`'s data dir (it must be stopped): a lost disk.
    pub fn wipe_data(&mut self, id: u64) -> Result<()> {
        let dir = self.spec.dir.join(format!("n{id}"));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("wiping {}", dir.display())),
        }
    }

    /// Runs `raft-rm admin ARGS` against the RM at `via`, with the
    /// cluster's secret; answers its output or why it failed.
    pub fn admin_command(&self, via: &str, args: &[&str]) -> Result<String> {
        let tls = self.tls_args("admin", "admin", "127.0.0.1:0", "off")?;
        let out = Command::new(self.spec.bin_dir.join("raft-rm"))
            .args(["admin", "--rm", via])
            .arg("--shared-secret-file")
            .arg(&self.secret_file)
            // The admin CLI is a client: no client-auth flag.
            .args(tls.iter().take(6))
            .args(args)
            .output()
            .context("running raft-rm admin")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "raft-rm admin {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }

    /// [`Self::launch`] with extra flags for this start only.
    fn launch_with(&mut self, id: u64, extra: &[&str]) -> Result<()> {
        self.launch_full(id, extra, &[])
    }

    fn launch_full(&mut self, id: u64, extra: &[&str], env: &[(&str, &str)]) -> Result<()> {
        let peers = self
            .addrs
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let log_path = self.spec.dir.join(format!("node{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let tls = self.tls_args(&format!("n{id}"), "raft-rm", &self.addrs[&id], "required")?;
        let child = self
            .command(&format!("n{id}"), &self.spec.bin_dir.join("raft-rm"))
            .args(["--id", &id.to_string(), "--listen", &self.addrs[&id]])
            .arg("--data-dir")
            .arg(self.spec.dir.join(format!("n{id}")))
            .args(["--peers", &peers])
            .arg("--shared-secret-file")
            .arg(&self.secret_file)
            .args(&self.spec.node_args)
            .args(&tls)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting raft-rm")?;
        self.procs.insert(id, child);
        Ok(())
    }

    /// Starts workers and coordinators that report to every RM.
    pub fn start_data_plane(&mut self, spec: &DataPlaneSpec) -> Result<()> {
        let rms = self.addr_list().join(",");
        let in_ns = self.spec.net.is_some();
        let port = |base: u16, i: u64| -> Result<u16> {
            if in_ns {
                Ok(if base == 0 { 8000 } else { base })
            } else if base == 0 {
                free_port()
            } else {
                base.checked_add(i as u16 - 1).context("port out of range")
            }
        };
        for i in 1..=spec.workers {
            let name = format!("w{i}");
            let addr = node_addr(
                self.spec.net.as_deref(),
                &name,
                port(spec.worker_base_port, i),
            )?;
            let memory = spec.worker_memory_bytes.to_string();
            // Its revoked fencing tokens outlive a restart by a nemesis.
            let data = self.spec.dir.join(format!("{name}-data"));
            let data = data.display().to_string();
            let mut args = vec!["--rm", &rms, "--memory-bytes", &memory, "--data-dir", &data];
            args.extend(spec.worker_args.iter().map(String::as_str));
            self.spawn_member(&name, &addr, "worker", &args)?;
        }
        let groups = spec.resource_groups.display().to_string();
        for i in 1..=spec.coordinators {
            let name = format!("c{i}");
            let addr = node_addr(
                self.spec.net.as_deref(),
                &name,
                port(spec.coordinator_base_port, i),
            )?;
            self.spawn_member(
                &name,
                &addr,
                "coordinator",
                &["--rm", &rms, "--resource-groups", &groups],
            )?;
        }
        Ok(())
    }

    fn spawn_member(&mut self, name: &str, addr: &str, binary: &str, args: &[&str]) -> Result<()> {
        let mut member = Member {
            name: name.to_string(),
            addr: addr.to_string(),
            binary: binary.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        member.child = Some(self.spawn_process(&member)?);
        self.members.push(member);
        Ok(())
    }

    fn spawn_process(&self, m: &Member) -> Result<Child> {
        let (name, addr, binary) = (&m.name, &m.addr, &m.binary);
        let bin = self.spec.bin_dir.join(binary);
        if !bin.exists() {
            bail!(
                "{} not found: build it first or pass --bin-dir",
                bin.display()
            );
        }
        let log_path = self.spec.dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        // Coordinators ask for certificates (the RMs' relay presents one);
        // Trino clients have none.
        let client_auth = if binary == "coordinator" {
            "optional"
        } else {
            "required"
        };
        let mut tls = self.tls_args(name, binary, addr, client_auth)?;
        if let (Some(pki), "coordinator") = (&self.pki, binary.as_str()) {
            tls.extend(pki.coordinator_args());
        }
        self.command(name, &bin)
            .args(["--id", name, "--listen", addr])
            .args(&m.args)
            .args(&tls)
            .arg("--shared-secret-file")
            .arg(&self.secret_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {binary}"))
    }

    /// The command that starts `program` as node `name` (in its namespace,
    /// if the cluster has them).
    fn command(&self, name: &str, program: &Path) -> Command {
        let mut c = match &self.spec.net {
            Some(net) => net.command(name, program),
            None => Command::new(program),
        };
        c.envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(lib) = &self.spec.faketime {
            let file = self.clock_file(name);
            if !file.exists() {
                let _ = std::fs::write(&file, "+0\n");
            }
            // Wall time only: timers and timeouts (monotonic) stay true.
            c.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        c
    }

    fn clock_file(&self, name: &str) -> PathBuf {
        self.spec.dir.join(format!("{name}.clock"))
    }

    /// Shifts the wall clock of `t` by `offset_ms` from the true time (0
    /// heals). Needs `faketime` in the spec.
    pub fn set_clock_offset(&self, t: &Target, offset_ms: i64) -> Result<()> {
        if self.spec.faketime.is_none() {
            bail!(
                "clock faults need libfaketime ({})",
                libfaketime().display()
            );
        }
        let text = format!("{:+.3}\n", offset_ms as f64 / 1000.0);
        std::fs::write(self.clock_file(&t.to_string()), text)
            .with_context(|| format!("shifting the clock of {t}"))
    }

    /// Whether clock faults are possible on this cluster.
    pub fn has_clock_control(&self) -> bool {
        self.spec.faketime.is_some()
    }

    /// The cluster's network namespaces, if it has them.
    pub fn net(&self) -> Option<&crate::netns::Network> {
        self.spec.net.as_deref()
    }

    /// Every process of the cluster: RMs, then workers and coordinators.
    pub fn targets(&self) -> Vec<Target> {
        let rms = self.addrs.keys().map(|id| Target::Rm(*id));
        let members = self.members.iter().map(|m| Target::Member(m.name.clone()));
        rms.chain(members).collect()
    }

    /// The process id of `t`, while it has a process.
    pub fn pid(&self, t: &Target) -> Option<i32> {
        match t {
            Target::Rm(id) => self.procs.get(id).map(|c| c.id() as i32),
            Target::Member(name) => self
                .members
                .iter()
                .find(|m| &m.name == name)
                .and_then(|m| m.child.as_ref())
                .map(|c| c.id() as i32),
        }
    }

    fn signal(&self, t: &Target, sig: i32) -> bool {
        match self.pid(t) {
            // SAFETY: kill(2) on a child pid we own; no memory is touched.
            Some(pid) => unsafe { libc::kill(pid, sig) == 0 },
            None => false,
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self, t: &Target) -> bool {
        self.signal(t, libc::SIGSTOP)
    }

    pub fn resume(&self, t: &Target) -> bool {
        self.signal(t, libc::SIGCONT)
    }

    /// SIGKILL (resumes it first if paused, so it can die).
    pub fn kill_target(&mut self, t: &Target) {
        self.resume(t);
        match t {
            Target::Rm(id) => self.kill(*id),
            Target::Member(name) => {
                if let Some(m) = self.members.iter_mut().find(|m| &m.name == name) {
                    if let Some(mut c) = m.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                }
            }
        }
    }

    /// Starts a killed process again, with its data and address; a running
    /// one is left alone.
    pub fn restart(&mut self, t: &Target) -> Result<()> {
        match t {
            Target::Rm(id) if !self.procs.contains_key(id) => self.launch(*id),
            Target::Member(name) => {
                let Some(i) = self.members.iter().position(|m| &m.name == name) else {
                    bail!("no process {name}");
                };
                if self.members[i].child.is_none() {
                    let child = self.spawn_process(&self.members[i])?;
                    self.members[i].child = Some(child);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            // SAFETY: kill(2) on a child pid we own; a paused one must wake to die.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM one RM and wait for its clean exit (SIGKILL after 5 s): the
    /// graceful stop of a rolling restart.
    pub fn stop_node(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            // SAFETY: kill(2) on a child pid we own; no memory is touched.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM everyone and wait for a clean exit (SIGKILL after 5 s).
    pub fn stop_all(&mut self) {
        for child in self.procs.values() {
            // SAFETY: kill(2) on a child pid we own; no memory is touched.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        for t in self.targets() {
            // A paused process cannot act on SIGTERM.
            self.resume(&t);
        }
        for child in self.members.iter().filter_map(|m| m.child.as_ref()) {
            // SAFETY: kill(2) on a child pid we own; no memory is touched.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let members = std::mem::take(&mut self.members)
            .into_iter()
            .filter_map(|m| m.child);
        for mut child in std::mem::take(&mut self.procs).into_values().chain(members) {
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Processes that exited on their own (a crash): name and status.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let rms = self.procs.iter_mut().filter_map(|(id, c)| {
            c.try_wait()
                .ok()
                .flatten()
                .map(|s| (format!("node{id}"), s.to_string()))
        });
        let members = self.members.iter_mut().filter_map(|m| {
            m.child
                .as_mut()?
                .try_wait()
                .ok()
                .flatten()
                .map(|s| (m.name.clone(), s.to_string()))
        });
        rms.chain(members).collect()
    }
}

/// RM membership changes (the membership nemesis): nodes that join the
/// running cluster, and nodes that leave it for good.
impl LocalCluster {
    /// The RMs the cluster started with.
    pub fn original_rms(&self) -> std::collections::BTreeSet<u64> {
        (1..=self.spec.nodes).collect()
    }

    /// Whether RM `id` has a process (running or paused).
    pub fn is_running(&self, id: u64) -> bool {
        self.procs.contains_key(&id)
    }

    /// Starts RM `id` at `addr` with an empty data dir and `--join`: it never
    /// founds a cluster, and waits to be added with the admin API. From now
    /// on it is a target like any other RM.
    pub fn launch_joining(&mut self, id: u64, addr: &str) -> Result<()> {
        self.kill(id);
        self.wipe(id)?;
        self.addrs.insert(id, addr.to_string());
        self.launch_with(id, &["--join"])
    }

    /// Where a new RM `id` would listen: its own address in its namespace,
    /// or a free loopback port.
    pub fn new_rm_addr(&self, id: u64) -> Result<String> {
        let port = if self.spec.net.is_some() {
            Ok(7000)
        } else {
            free_port()
        };
        node_addr(self.spec.net.as_deref(), &format!("n{id}"), port)
    }

    /// SIGKILLs RM `id`, wipes its data dir and forgets it: no other fault
    /// targets it and no restart brings it back. Answers its address.
    pub fn retire(&mut self, id: u64) -> Result<Option<String>> {
        self.kill(id);
        self.wipe(id)?;
        Ok(self.addrs.remove(&id))
    }

    fn wipe(&self, id: u64) -> Result<()> {
        let data = self.spec.dir.join(format!("n{id}"));
        match std::fs::remove_dir_all(&data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("wiping {}", data.display()))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.members.iter_mut().filter_map(|m| m.child.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for id in self.procs.keys().copied().collect::<Vec<_>>() {
            self.kill(id);
        }
    }
}
