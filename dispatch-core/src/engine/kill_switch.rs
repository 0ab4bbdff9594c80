//! The kill switch, stored so that every process on the store sees a change at its next read:
//! new spawns are refused (the gates' first rule), the dispatcher leaves queued runs queued and
//! the sweeper leaves deferred spawns waiting until it is off again. `SPAWN_KILL_SWITCH=true` in
//! the environment keeps it on whatever is stored (`gate::effective_kill_switch`).

use super::Dispatch;
use crate::error::{Error, Result};
use crate::gate::{SpawnPolicy, effective_kill_switch};
use crate::issue::Actor;
use serde::{Deserialize, Serialize};

/// The setting's key in the store.
pub const KILL_SWITCH_SETTING: &str = "kill_switch";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillSwitch {
    /// Whether spawning is stopped now.
    pub enabled: bool,
    /// `SPAWN_KILL_SWITCH=true` in this process's environment: it cannot be turned off here.
    pub forced_by_environment: bool,
    /// The value last set through the API or UI (`None`: never set).
    pub stored: Option<bool>,
}

impl Dispatch {
    pub async fn kill_switch(&self) -> Result<KillSwitch> {
        let stored = self
            .inner
            .store
            .get_setting(KILL_SWITCH_SETTING)
            .await?
            .and_then(|v| v.as_bool());
        let env = self.inner.config.policy.kill_switch;
        Ok(KillSwitch {
            enabled: effective_kill_switch(env, stored),
            forced_by_environment: env,
            stored,
        })
    }

    /// Turns spawning off (`true`) or back on for every process on the store.
    pub async fn set_kill_switch(&self, enabled: bool, actor: &Actor) -> Result<KillSwitch> {
        if !enabled && self.inner.config.policy.kill_switch {
            return Err(Error::conflict(
                "SPAWN_KILL_SWITCH=true in the server's environment keeps the kill switch on; \
                 remove it there to turn spawning back on",
            ));
        }
        self.inner
            .store
            .set_setting(KILL_SWITCH_SETTING, &serde_json::json!(enabled), self.now())
            .await?;
        tracing::warn!(enabled, actor = %actor.name, "kill switch changed");
        self.kill_switch().await
    }

    /// The spawn policy with the kill switch as it is now.
    pub(crate) async fn current_policy(&self) -> Result<SpawnPolicy> {
        let mut p = self.inner.config.policy.clone();
        p.kill_switch = self.kill_switch().await?.enabled;
        Ok(p)
    }
}
