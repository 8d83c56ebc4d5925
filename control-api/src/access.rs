//! Who may call the control API: the `[control]` section in force, replaced whole by a reload
//! (new tokens and AWS credentials apply to the next request). Shared by the server and by the
//! peer-check client, which signs its own calls with the same credentials.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::ControlConfig;

/// See the module documentation.
#[derive(Debug)]
pub struct Access(ArcSwap<ControlConfig>);

impl Access {
    /// Access as `control` says.
    pub fn new(control: ControlConfig) -> Arc<Access> {
        Arc::new(Access(ArcSwap::from_pointee(control)))
    }

    /// The section in force now.
    pub fn current(&self) -> Arc<ControlConfig> {
        self.0.load_full()
    }

    /// Replaces it (a reload).
    pub fn replace(&self, control: ControlConfig) {
        self.0.store(Arc::new(control));
    }
}
