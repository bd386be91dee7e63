//! The resource-group configuration this coordinator selects and admits
//! by: the one in the RMs' log. `--resource-groups` only bootstraps it (and
//! may be left out); [`GroupsInForce::follow`] reads the configuration in
//! force from the RMs every [`FOLLOW_EVERY`] and takes any newer version,
//! so a `POST /v1/admin/config` reaches every coordinator within about a
//! second, and a coordinator never keeps the selectors, modes and limits of
//! the file it started with.
//!
//! The group specs come from the log as the RMs resolved them (a root
//! without a `consistency` took the RMs' default there); the selectors are
//! parsed from the file's text the log keeps beside them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::api::ConfigInForce;
use common::resource_groups::{Consistency, ResourceGroups};
use common::rm::RmClient;
use tokio::sync::watch;

/// How often the configuration in force is read from the RMs.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// A configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Groups {
    /// The log's version; `None` for the bootstrap file.
    pub version: Option<u64>,
    pub groups: ResourceGroups,
    /// The RMs' `queue-timeout-ms` (`None` for the bootstrap file): eventual
    /// groups' queued queries fail past it too.
    pub queue_timeout: Option<Duration>,
}

pub struct GroupsInForce {
    current: RwLock<Option<Arc<Groups>>>,
}

impl GroupsInForce {
    /// Starts from the bootstrap file, if any.
    pub fn new(bootstrap: Option<ResourceGroups>) -> Arc<GroupsInForce> {
        Arc::new(GroupsInForce {
            current: RwLock::new(bootstrap.map(|groups| {
                Arc::new(Groups {
                    version: None,
                    groups,
                    queue_timeout: None,
                })
            })),
        })
    }

    /// The configuration queries are selected and admitted by now; `None`
    /// before the bootstrap file or the RMs gave one.
    pub fn get(&self) -> Option<Arc<Groups>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The log's version in force here, if any.
    pub fn version(&self) -> Option<u64> {
        self.get().and_then(|g| g.version)
    }

    /// Takes `config` if it is newer than the one in force. `Ok(true)`: it
    /// now is in force.
    pub fn take(&self, config: &ConfigInForce) -> Result<bool, String> {
        if self.version().is_some_and(|v| v >= config.version) {
            return Ok(false);
        }
        // The RMs accepted this text, so it parses; the default consistency
        // given here is not used, since the log's resolved specs replace
        // the roots parsed here.
        let mut groups = common::resource_groups::parse(&config.source, &Consistency::Linearizable)
            .map_err(|e| format!("configuration version {}: {e}", config.version))?;
        if !config.roots.is_empty() {
            groups.roots = config.roots.clone();
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Another taker may have been faster with a newer one.
        if current
            .as_ref()
            .and_then(|g| g.version)
            .is_some_and(|v| v >= config.version)
        {
            return Ok(false);
        }
        *current = Some(Arc::new(Groups {
            version: Some(config.version),
            groups,
            queue_timeout: Some(Duration::from_millis(config.settings.queue_timeout_ms)),
        }));
        Ok(true)
    }

    /// Reads the configuration in force every [`FOLLOW_EVERY`] and takes
    /// newer versions, until `stop`.
    pub async fn follow(self: Arc<Self>, rms: Arc<RmClient>, mut stop: watch::Receiver<bool>) {
        loop {
            match rms.config().await {
                Ok(Some(config)) => match self.take(&config) {
                    Ok(true) => {
                        for w in self.get().iter().flat_map(|g| g.groups.warnings.clone()) {
                            tracing::warn!("resource groups: {w}");
                        }
                        tracing::info!(
                            version = config.version,
                            "resource-group configuration in force"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!("cannot take the RMs' configuration: {e}"),
                },
                Ok(None) => tracing::debug!("the RMs have no resource-group configuration yet"),
                Err(e) => tracing::debug!(error = %e, "cannot read the configuration in force"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::AdmissionSettings;

    fn in_force(version: u64, limit: u32) -> ConfigInForce {
        let source = format!(
            r#"{{"rootGroups":[{{"name":"g","hardConcurrencyLimit":{limit},"maxQueued":1}}],
                "selectors":[{{"group":"g"}}]}}"#
        );
        ConfigInForce {
            version,
            roots: Vec::new(),
            source,
            settings: AdmissionSettings {
                session_lease_ms: 1000,
                queue_timeout_ms: 1000,
                orphan_timeout_ms: 1000,
            },
        }
    }

    fn limit(g: &GroupsInForce) -> u32 {
        g.get().unwrap().groups.roots[0].hard_concurrency_limit
    }

    #[test]
    fn a_newer_version_replaces_the_bootstrap_and_an_older_one_never_does() {
        let bootstrap =
            common::resource_groups::parse(&in_force(0, 1).source, &Consistency::Linearizable)
                .unwrap();
        let g = GroupsInForce::new(Some(bootstrap));
        assert_eq!((g.version(), limit(&g)), (None, 1));
        assert_eq!(g.take(&in_force(3, 5)), Ok(true));
        assert_eq!((g.version(), limit(&g)), (Some(3), 5));
        assert_eq!(g.take(&in_force(2, 7)), Ok(false));
        assert_eq!(g.take(&in_force(3, 7)), Ok(false));
        assert_eq!(limit(&g), 5);
    }

    #[test]
    fn the_logs_resolved_specs_win_over_the_texts_defaults() {
        let g = GroupsInForce::new(None);
        assert!(g.get().is_none());
        let mut config = in_force(1, 2);
        let mut roots = common::resource_groups::parse(&config.source, &Consistency::Linearizable)
            .unwrap()
            .roots;
        roots[0].consistency = Consistency::Eventual {
            max_staleness_ms: 250,
        };
        config.roots = roots;
        assert_eq!(g.take(&config), Ok(true));
        assert_eq!(
            g.get().unwrap().groups.roots[0].consistency,
            Consistency::Eventual {
                max_staleness_ms: 250
            }
        );
    }
}
