//! `GET /v1/resourceGroupState/{id}`: a resource group's state in the
//! shape of Trino's `ResourceGroupInfo`, from any coordinator. The group's
//! path is the URL's segments (`/v1/resourceGroupState/global/adhoc`), as
//! in Trino. Its limits come from the configuration in force here, its
//! counts from the RMs' aggregated view (everyone's running and queued, a
//! replica at most [`VIEW_STALENESS_MS`] stale).
//!
//! Memory and CPU usage are the leader's last usage stamp as the view
//! carries it, and `state` follows the same rules as admission (memory
//! over `softMemoryLimit`, CPU over its limits: not `CAN_RUN`).

use std::collections::BTreeMap;

use common::api::View;
use std::time::Duration;

use common::resource_groups::limits::can_run_more;
use common::resource_groups::{
    succinct_duration, GroupSpec, MemoryLimit, ResourceUsage, SchedulingPolicy,
};
use serde::Serialize;

/// How stale a view this informational answer may come from.
pub const VIEW_STALENESS_MS: u64 = 1000;

/// Trino's `ResourceGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupState {
    /// Below its concurrency limit: a query would start.
    CanRun,
    /// At its limit, with room in its queue.
    CanQueue,
    /// At its limit and its queue full: a query would be refused.
    Full,
}

/// One group, as Trino's `ResourceGroupInfo` names its fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupInfo {
    pub id: Vec<String>,
    pub state: GroupState,
    pub scheduling_policy: &'static str,
    pub scheduling_weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_memory_limit: Option<String>,
    pub soft_concurrency_limit: u32,
    pub hard_concurrency_limit: u32,
    pub max_queued_queries: u32,
    pub num_queued_queries: u32,
    pub num_running_queries: u32,
    pub num_eligible_sub_groups: u32,
    /// Memory of its running queries, as last stamped (`400B`).
    pub memory_usage: String,
    /// CPU time charged and not yet regenerated, as last stamped.
    pub cpu_usage: String,
    /// Our extension: how the group admits (`linearizable`, `eventual`).
    pub consistency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_groups: Option<Vec<GroupInfo>>,
}

impl GroupState {
    /// Trino's name (`CAN_RUN`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::CanRun => "CAN_RUN",
            GroupState::CanQueue => "CAN_QUEUE",
            GroupState::Full => "FULL",
        }
    }
}

/// A group's state with `running` and `queued` queries using `usage`, by
/// the rules admission follows.
pub fn state_of(
    spec: &GroupSpec,
    running: u32,
    queued: u32,
    usage: &ResourceUsage,
    cluster_memory_bytes: u64,
) -> GroupState {
    if can_run_more(&spec.run_limits(), running, usage, cluster_memory_bytes) {
        GroupState::CanRun
    } else if queued < spec.max_queued {
        GroupState::CanQueue
    } else {
        GroupState::Full
    }
}

fn policy_name(p: SchedulingPolicy) -> &'static str {
    match p {
        SchedulingPolicy::Fair => "FAIR",
        SchedulingPolicy::WeightedFair => "WEIGHTED_FAIR",
        SchedulingPolicy::Weighted => "WEIGHTED",
        SchedulingPolicy::QueryPriority => "QUERY_PRIORITY",
    }
}

/// `id`'s state: its spec (resolved from the configuration) and the
/// view's counts, with one level of subgroups (those the view knows: the
/// configured literal ones and every live one).
pub fn group_info(id: &str, spec: &GroupSpec, view: &View) -> GroupInfo {
    let counts: BTreeMap<&str, (u32, u32, ResourceUsage)> = view
        .groups
        .iter()
        .map(|g| (g.id.as_str(), (g.running, g.queued, g.usage())))
        .collect();
    let info = |id: &str, spec: &GroupSpec| {
        let (running, queued, usage) = counts.get(id).copied().unwrap_or_default();
        let state = state_of(spec, running, queued, &usage, view.cluster_memory_bytes);
        GroupInfo {
            id: id.split('.').map(str::to_string).collect(),
            state,
            scheduling_policy: policy_name(spec.scheduling_policy),
            scheduling_weight: spec.scheduling_weight,
            soft_memory_limit: spec.soft_memory_limit.as_ref().map(|m| match m {
                MemoryLimit::Bytes(b) => format!("{b}B"),
                MemoryLimit::Percent(p) => format!("{p}%"),
            }),
            soft_concurrency_limit: spec
                .soft_concurrency_limit
                .unwrap_or(spec.hard_concurrency_limit),
            hard_concurrency_limit: spec.hard_concurrency_limit,
            max_queued_queries: spec.max_queued,
            num_queued_queries: queued,
            num_running_queries: running,
            num_eligible_sub_groups: 0,
            memory_usage: format!("{}B", usage.memory_bytes),
            cpu_usage: succinct_duration(Duration::from_millis(usage.cpu_ms)),
            consistency: match &spec.consistency {
                common::resource_groups::Consistency::Linearizable => "linearizable".into(),
                common::resource_groups::Consistency::Eventual { max_staleness_ms } => {
                    format!("eventual ({max_staleness_ms} ms)")
                }
            },
            sub_groups: None,
        }
    };
    let mut top = info(id, spec);
    if !spec.is_leaf() {
        let prefix = format!("{id}.");
        let subs: Vec<GroupInfo> = view
            .groups
            .iter()
            .filter_map(|g| {
                let name = g.id.strip_prefix(&prefix)?;
                (!name.contains('.')).then_some(name)
            })
            .filter_map(|name| {
                let child = common::resource_groups::child_for(&spec.sub_groups, name)?;
                Some(info(&format!("{prefix}{name}"), child))
            })
            .collect();
        top.num_eligible_sub_groups = subs
            .iter()
            .filter(|s| s.num_queued_queries > 0 && s.state == GroupState::CanRun)
            .count() as u32;
        top.sub_groups = Some(subs);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::{GroupView, Mode};

    fn view(groups: &[(&str, u32, u32)]) -> View {
        View {
            served_by: 1,
            as_of_ms: 0,
            staleness_ms: 0,
            last_applied: None,
            config_version: Some(1),
            groups: groups
                .iter()
                .map(|(id, running, queued)| GroupView {
                    id: id.to_string(),
                    mode: Mode::Linearizable,
                    max_staleness_ms: None,
                    running: *running,
                    queued: *queued,
                    hard_concurrency_limit: 0,
                    max_queued: 0,
                    draining: false,
                    memory_bytes: 0,
                    cpu_ms: 0,
                })
                .collect(),
            reports: Default::default(),
            report_ages_ms: Default::default(),
            cluster_memory_bytes: 0,
        }
    }

    #[test]
    fn a_groups_state_in_trinos_shape() {
        let rg = common::resource_groups::parse(
            r#"{"rootGroups":[{"name":"global","hardConcurrencyLimit":3,"maxQueued":5,
                "subGroups":[{"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":1}]}]}"#,
            &common::resource_groups::Consistency::Linearizable,
        )
        .unwrap();
        let v = view(&[
            ("global", 3, 1),
            ("global.alice", 1, 1),
            ("global.bob", 1, 0),
        ]);
        let info = group_info("global", &rg.roots[0], &v);
        assert_eq!(info.state, GroupState::CanQueue);
        assert_eq!((info.num_running_queries, info.num_queued_queries), (3, 1));
        let subs = info.sub_groups.as_ref().unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].id, ["global", "alice"]);
        assert_eq!(subs[0].state, GroupState::Full);
        assert_eq!(subs[1].state, GroupState::CanQueue);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["hardConcurrencyLimit"], 3);
        assert_eq!(json["maxQueuedQueries"], 5);
        assert_eq!(json["schedulingPolicy"], "FAIR");
        assert_eq!(json["state"], "CAN_QUEUE");
        assert_eq!(json["memoryUsage"], "0B");
        assert_eq!(json["cpuUsage"], "0.00ns");
    }

    /// Over its soft memory limit a group with free slots cannot run.
    #[test]
    fn memory_over_the_soft_limit_is_not_can_run() {
        let rg = common::resource_groups::parse(
            r#"{"rootGroups":[{"name":"m","hardConcurrencyLimit":5,"maxQueued":5,"softMemoryLimit":"100B"}]}"#,
            &common::resource_groups::Consistency::Linearizable,
        )
        .unwrap();
        let mut v = view(&[("m", 1, 0)]);
        v.groups[0].memory_bytes = 150;
        v.groups[0].cpu_ms = 1_500;
        let info = group_info("m", &rg.roots[0], &v);
        assert_eq!(info.state, GroupState::CanQueue);
        assert_eq!(info.memory_usage, "150B");
        assert_eq!(info.cpu_usage, "1.50s");
    }
}
