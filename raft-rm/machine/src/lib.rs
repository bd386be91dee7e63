//! The replicated state machine: a pure function of the committed log.
//!
//! `State::apply(index, request) -> Response` does no I/O, reads no clock and
//! draws no random numbers, so replaying the same log always yields the same
//! state, byte for byte (see `State::digest`). The only notion of time is the
//! time the leader stamped into each entry, kept monotonic here.
//!
//! A crate of its own, depending only on serde and the resource-group
//! model: no runtime, storage, Raft, network, clock or randomness can
//! reach it (its tests check the dependency list too). The node's openraft
//! glue (`raft-rm`'s `store::state_machine`) does log ids, membership and
//! snapshots, and delegates every application command here.
//!
//! Commands:
//! - admission ([`admission`]): sessions, acquire, release, adopt, usage
//!   reports, configuration, and `Tick`, the leader's clock in the log, which
//!   expires sessions and fails queued queries past the queue timeout;
//! - memory kills ([`memory`]): the low-memory killer's decisions (one per
//!   episode) and per-query memory-limit kills, proposed by the leader;
//! - `Canary`: a deduplicated counter increment per client. It exercises the
//!   whole durable write path and is what operators and the crash tests use
//!   to prove that every acknowledged write is applied exactly once.

pub mod admission;
#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
pub mod finished;
pub mod memory;
mod scheduling;
pub mod usage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use admission::{
    AcquireRequest, Admission, Decision, GroupsConfig, RejectReason, ReleaseOutcome,
};

/// An application command as it travels through the log, with the leader's
/// wall-clock time (ms since epoch) at proposal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub leader_time_ms: u64,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Increment `client`'s canary counter if `seq` is newer than the last
    /// one applied for that client. Retries of an applied `seq` are no-ops.
    Canary {
        client: String,
        seq: u64,
    },
    /// The leader's clock in the log: advances log time (so replicas can
    /// tell how stale they are), expires sessions, fails queued queries past
    /// the queue timeout.
    Tick,
    RegisterSession {
        coordinator: String,
    },
    RenewSession {
        session: u64,
    },
    Acquire(AcquireRequest),
    Release {
        query_id: String,
    },
    Adopt {
        query_id: String,
        coordinator: String,
        session: u64,
    },
    Report {
        coordinator: String,
        seq: u64,
        groups: BTreeMap<String, (u32, u32)>,
    },
    SetConfig(GroupsConfig),
    /// Kill a query for memory (see [`memory`]).
    Kill(memory::KillProposal),
    /// The leader saw the memory of kill decision `index` gone.
    SettleKill {
        index: u64,
    },
    /// The leader's view of running queries' memory and CPU (see
    /// [`usage`]): groups' memory and CPU limits decide on it.
    Usage(usage::UsageStamp),
    /// Several commands proposed concurrently, committed as one entry (group
    /// commit: one append, one fsync per replica for all of them). They are
    /// applied in order at the entry's index and log time, sharing its
    /// fencing-token ranks, exactly as if they had been separate entries
    /// with nothing in between. Only [`Command::batchable`] commands may be
    /// inside; any other is answered [`Response::NotBatchable`] and changes
    /// nothing.
    Batch(Vec<Command>),
}

impl Command {
    /// Whether this command means the same inside a [`Command::Batch`] as
    /// in an entry of its own. Not so for commands that take the entry's
    /// index as an identity (a session id, a config version, a kill
    /// decision), for the leader's `Tick`, or for a nested batch.
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            Command::Canary { .. }
                | Command::RenewSession { .. }
                | Command::Acquire(_)
                | Command::Release { .. }
                | Command::Adopt { .. }
                | Command::Report { .. }
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to a log entry that carries no command (blank or membership).
    #[default]
    None,
    Canary(CanaryOutcome),
    Session {
        session: u64,
        expires_at_ms: u64,
    },
    SessionExpired,
    Admission(Decision),
    Release(ReleaseOutcome),
    /// `None`: no such query.
    Adopted(Option<Decision>),
    Reported {
        applied: bool,
    },
    ConfigApplied {
        version: u64,
    },
    ConfigRejected {
        reason: String,
    },
    Kill(memory::KillAnswer),
    KillSettled {
        settled: bool,
    },
    /// A usage stamp applied: the query it had killed (at most one) for a
    /// per-query limit of its group.
    UsageStamped {
        killed: Vec<String>,
    },
    /// The answers to a [`Command::Batch`], one per command, in order.
    Batch(Vec<Response>),
    /// A command that may not travel in a batch was found in one.
    NotBatchable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryOutcome {
    /// False when `seq` was not newer than the last applied one (a retry).
    pub applied: bool,
    /// Increments applied for this client so far.
    pub count: u64,
    /// Highest `seq` applied for this client.
    pub last_seq: u64,
    /// Log index at which this client's last increment was applied.
    pub last_index: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryCounter {
    pub count: u64,
    pub last_seq: u64,
    pub last_index: u64,
}

/// Everything the log has decided. Ordered maps only: iteration order (and
/// so the encoded bytes) depends on content, never on insertion history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Highest leader time seen in the log (ms). Never moves backwards, even
    /// if a new leader's clock is behind the old one's.
    pub log_time_ms: u64,
    pub canaries: BTreeMap<String, CanaryCounter>,
    pub admission: Admission,
    pub memory: memory::MemoryState,
}

impl State {
    /// Applies one committed command at log `index`.
    pub fn apply(&mut self, index: u64, request: &Request) -> Response {
        self.log_time_ms = self.log_time_ms.max(request.leader_time_ms);
        // Orders the admissions one entry makes (fencing tokens).
        let mut rank = 0;
        match &request.command {
            Command::Batch(commands) => Response::Batch(
                commands
                    .iter()
                    .map(|c| match c.batchable() {
                        true => self.apply_command(index, c, &mut rank),
                        false => Response::NotBatchable,
                    })
                    .collect(),
            ),
            command => self.apply_command(index, command, &mut rank),
        }
    }

    fn apply_command(&mut self, index: u64, command: &Command, rank: &mut u64) -> Response {
        let now = self.log_time_ms;
        let adm = &mut self.admission;
        match command {
            Command::Canary { client, seq } => self.apply_canary(index, client, *seq),
            Command::Tick => {
                adm.tick(index, now, rank);
                self.memory.tick(now);
                Response::None
            }
            Command::RegisterSession { coordinator } => {
                let (session, expires_at_ms) = adm.register_session(index, coordinator, now);
                Response::Session {
                    session,
                    expires_at_ms,
                }
            }
            Command::RenewSession { session } => match adm.renew_session(*session, now) {
                Some(expires_at_ms) => Response::Session {
                    session: *session,
                    expires_at_ms,
                },
                None => Response::SessionExpired,
            },
            Command::Acquire(req) => Response::Admission(adm.acquire(index, req, now, rank)),
            Command::Release { query_id } => Response::Release(adm.release(index, query_id, rank)),
            Command::Adopt {
                query_id,
                coordinator,
                session,
            } => Response::Adopted(adm.adopt(query_id, coordinator, *session, now)),
            Command::Report {
                coordinator,
                seq,
                groups,
            } => Response::Reported {
                applied: adm.report(coordinator, *seq, groups.clone(), now),
            },
            Command::SetConfig(config) => match adm.set_config(index, config.clone(), rank) {
                Ok(version) => Response::ConfigApplied { version },
                Err(reason) => Response::ConfigRejected { reason },
            },
            Command::Kill(proposal) => {
                let answer = self.memory.kill(index, proposal, now);
                if matches!(answer, memory::KillAnswer::Decided { .. }) {
                    adm.push_kill_event(index, &proposal.query_id, &proposal.reason);
                }
                Response::Kill(answer)
            }
            Command::SettleKill { index: decision } => Response::KillSettled {
                settled: self.memory.settle_freed(*decision, now),
            },
            Command::Usage(stamp) => {
                let mut killed = Vec::new();
                for (query_id, reason) in adm.stamp_usage(index, stamp, now, rank) {
                    // A decision is identified by its entry's index: one
                    // kill per stamp (the others wait for the next stamp).
                    if !killed.is_empty() {
                        break;
                    }
                    let proposal = memory::KillProposal {
                        query_id,
                        reason,
                        figures: memory::MemoryFigures::default(),
                        leak_timeout_ms: stamp.leak_timeout_ms,
                    };
                    let answer = self.memory.kill(index, &proposal, now);
                    if matches!(answer, memory::KillAnswer::Decided { .. }) {
                        adm.push_kill_event(index, &proposal.query_id, &proposal.reason);
                        killed.push(proposal.query_id);
                    }
                }
                Response::UsageStamped { killed }
            }
            // Only `apply` unpacks a batch, and never one inside another.
            Command::Batch(_) => Response::NotBatchable,
        }
    }

    fn apply_canary(&mut self, index: u64, client: &str, seq: u64) -> Response {
        let counter = self.canaries.entry(client.to_string()).or_default();
        let applied = seq > counter.last_seq;
        if applied {
            counter.count += 1;
            counter.last_seq = seq;
            counter.last_index = index;
        }
        Response::Canary(CanaryOutcome {
            applied,
            count: counter.count,
            last_seq: counter.last_seq,
            last_index: counter.last_index,
        })
    }
}

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod tests;
