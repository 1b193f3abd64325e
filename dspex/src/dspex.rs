//! [`Dspex`]: the handle every typed call goes through.

use std::path::PathBuf;

use snakepit_grpc_bridge::api::dspy::Lm;
use snakepit_grpc_bridge::{Bridge, BridgeBuilder};

use crate::error::Result;

/// A running pool of Python DSPy workers. A cheap [`Clone`] handle (Send + Sync) that any number
/// of tasks can share; the workers stop when the last handle is dropped or on
/// [`Dspex::shutdown`].
///
/// ```no_run
/// # async fn demo() -> dspex::Result<()> {
/// use dspex::prelude::*;
/// let dspex = Dspex::builder()
///     .lm(Lm::new("openai/gpt-4o-mini").api_key_env("OPENAI_API_KEY"))
///     .workers(2)
///     .start()
///     .await?;
/// dspex.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Dspex {
    pub(crate) bridge: Bridge,
}

/// Configures and starts [`Dspex`].
#[derive(Debug, Clone)]
pub struct DspexBuilder {
    bridge: BridgeBuilder,
}

impl DspexBuilder {
    /// The LM every call uses unless a module or call says otherwise.
    pub fn lm(mut self, lm: Lm) -> Self {
        self.bridge = self.bridge.lm(lm);
        self
    }

    /// Number of Python workers. Default: 2.
    pub fn workers(mut self, n: usize) -> Self {
        self.bridge = self.bridge.workers(n);
        self
    }

    /// A Python module each worker imports (your own DSPy modules or `@tool`s).
    pub fn import(mut self, module: impl Into<String>) -> Self {
        self.bridge = self.bridge.import(module);
        self
    }

    /// Sends the progress of provisioning the Python environment (the first start on a machine)
    /// to `report` instead of standard error; see [`crate::progress::ProgressBar::provisioning`].
    pub fn on_provisioning(
        mut self,
        report: impl Fn(&crate::progress::ProvisionProgress) + Send + Sync + 'static,
    ) -> Self {
        self.bridge = self.bridge.on_provisioning(report);
        self
    }

    /// A directory on the workers' `PYTHONPATH`.
    pub fn python_path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bridge = self.bridge.python_path(dir);
        self
    }

    /// An explicit Python interpreter instead of the managed environment.
    pub fn python(mut self, interpreter: impl Into<PathBuf>) -> Self {
        self.bridge = self.bridge.python(interpreter);
        self
    }

    /// Runs the workers on the Ray cluster at `placement` (an address such as `127.0.0.1:6379`,
    /// or a [`RayPlacement`](snakepit_grpc_bridge::RayPlacement)); see
    /// [`BridgeBuilder::ray`](snakepit_grpc_bridge::BridgeBuilder::ray).
    pub fn ray(mut self, placement: impl Into<snakepit_grpc_bridge::RayPlacement>) -> Self {
        self.bridge = self.bridge.ray(placement);
        self
    }

    /// Changes the underlying bridge configuration (pool limits, transport, ...).
    pub fn bridge(mut self, configure: impl FnOnce(BridgeBuilder) -> BridgeBuilder) -> Self {
        self.bridge = configure(self.bridge);
        self
    }

    /// Provisions Python if needed (first run: about a minute, with progress) and starts the
    /// workers.
    pub async fn start(self) -> Result<Dspex> {
        Ok(Dspex {
            bridge: self.bridge.start().await?,
        })
    }
}

impl Dspex {
    /// A builder with the defaults.
    pub fn builder() -> DspexBuilder {
        DspexBuilder {
            bridge: Bridge::builder(),
        }
    }

    /// The bridge underneath, for what the typed layer does not cover (tools, variables).
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// Stops the workers and waits until they are gone.
    pub async fn shutdown(&self) -> Result<()> {
        self.bridge.shutdown().await?;
        Ok(())
    }
}
