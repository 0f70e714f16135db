//! The deadlines every protocol section has under the same names (`[<protocol>.deadlines]`); defaults and
//! what happens when one runs out are in `docs/limits.md`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{at_least_one, ConfigError};

/// `[<protocol>.deadlines]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Deadlines {
    /// From accept until the transport handshake (TLS, WebSocket upgrade, HTTP/2 preface) and, where the
    /// protocol has one, its login are done.
    pub pre_auth_ms: u64,
    /// How long a frame may stay started but unfinished.
    pub idle_frame_ms: u64,
    /// How long one write to a client that does not read may block.
    pub write_ms: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            pre_auth_ms: 10_000,
            idle_frame_ms: 30_000,
            write_ms: 30_000,
        }
    }
}

impl Deadlines {
    pub fn pre_auth(&self) -> Duration {
        Duration::from_millis(self.pre_auth_ms)
    }

    pub fn idle_frame(&self) -> Duration {
        Duration::from_millis(self.idle_frame_ms)
    }

    pub fn write(&self) -> Duration {
        Duration::from_millis(self.write_ms)
    }

    /// Refuses a zero deadline, which would cut every connection; `section` names the config section.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        for (key, value) in [
            ("pre_auth_ms", self.pre_auth_ms),
            ("idle_frame_ms", self.idle_frame_ms),
            ("write_ms", self.write_ms),
        ] {
            at_least_one(&format!("{section}.deadlines.{key}"), value)?;
        }
        Ok(())
    }
}
