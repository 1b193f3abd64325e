//! Workers on a Ray cluster: where they run ([`RayPlacement`]) and the certificates a real
//! cluster's workers serve ([`TlsIdentity`]).
//!
//! With a placement, every worker of the pool is hosted by a Ray actor on the cluster and serves
//! the worker API on its node's address over TCP, with TLS and the run's token. The pool still
//! supervises each worker through a small local shim (`forkshim.py`, the fork server's), which
//! speaks to the pool's one Ray driver process (`python -m snakepit_bridge.ray_driver`, started
//! and restarted like the fork server, `fork_server.rs`). See ARCHITECTURE.md for the process map
//! and what happens when the owner, the driver, a node or the head dies.

use std::ffi::OsString;
use std::time::Duration;

/// The environment variable naming a Ray cluster to place workers on, read by `dspex`'s
/// configuration (`ray_address` in `dspex.toml`).
pub const RAY_ADDRESS_ENV: &str = "DSPEX_RAY_ADDRESS";

/// Where a pool's workers run when they run on a Ray cluster.
///
/// ```
/// use snakepit_grpc_bridge::{Bridge, RayPlacement};
/// let builder = Bridge::builder()
///     .workers(4)
///     .ray(RayPlacement::new("127.0.0.1:6379").num_cpus(1.0));
/// ```
#[derive(Debug, Clone)]
pub struct RayPlacement {
    address: String,
    namespace: String,
    num_cpus: f64,
    tls: Option<TlsIdentity>,
}

impl RayPlacement {
    /// Workers on the cluster at `address`: `host:port` of a cluster this machine is a node of
    /// (the GCS address `ray start --head` prints), or `ray://host:10001` through Ray Client.
    pub fn new(address: impl Into<String>) -> Self {
        RayPlacement {
            address: address.into(),
            namespace: "snakepit".to_owned(),
            num_cpus: 0.0,
            tls: None,
        }
    }

    /// The Ray namespace the actors are created in (default `snakepit`); their names are
    /// `snakepit-<run id>-<slot>.<generation>`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The logical CPUs Ray reserves for each worker (default 0: a worker mostly waits on its LM;
    /// give 1 to have Ray spread workers by CPU).
    pub fn num_cpus(mut self, cpus: f64) -> Self {
        self.num_cpus = cpus;
        self
    }

    /// The certificate the workers serve and the one the pool trusts, for a real cluster. Without
    /// it, each run makes a self-signed certificate for `localhost` and trusts exactly that one.
    pub fn tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// The cluster's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The certificates given with [`tls`](Self::tls).
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.tls.as_ref()
    }

    /// Whether the placement can be used; why not, when not (checked again at start).
    ///
    /// ```
    /// use snakepit_grpc_bridge::RayPlacement;
    /// assert!(RayPlacement::new("127.0.0.1:6379").check().is_ok());
    /// assert!(RayPlacement::new("127.0.0.1").check().is_err());
    /// ```
    pub fn check(&self) -> Result<(), String> {
        let address = self.address.trim();
        if address.is_empty() {
            return Err("the Ray address is empty".to_owned());
        }
        if address.chars().any(char::is_whitespace) {
            return Err(format!("the Ray address {address:?} contains whitespace"));
        }
        let host_port = address.strip_prefix("ray://").unwrap_or(address);
        if address.contains("://") && !address.starts_with("ray://") {
            return Err(format!(
                "the Ray address {address:?} has a scheme other than ray://"
            ));
        }
        let valid_port = host_port
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid_port && address != "auto" {
            return Err(format!(
                "the Ray address {address:?} is not host:port, ray://host:port or auto"
            ));
        }
        if !(self.num_cpus.is_finite() && self.num_cpus >= 0.0) {
            return Err(format!(
                "num_cpus must be a finite number ≥ 0, not {}",
                self.num_cpus
            ));
        }
        if self.namespace.is_empty() || self.namespace.chars().any(char::is_whitespace) {
            return Err(format!(
                "the Ray namespace {:?} is not valid",
                self.namespace
            ));
        }
        Ok(())
    }

    /// The Ray driver's arguments after `--control`; `dead_runs`: the runs whose actors it ends
    /// first.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn driver_args(
        &self,
        start_timeout: Duration,
        dead_runs: &[String],
    ) -> Vec<OsString> {
        let dead_runs = dead_runs.join(",");
        [
            "--address",
            self.address.trim(),
            "--namespace",
            &self.namespace,
            "--num-cpus",
            &self.num_cpus.to_string(),
            "--start-timeout",
            &start_timeout.as_secs_f64().to_string(),
            "--dead-runs",
            &dead_runs,
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }
}

impl From<&str> for RayPlacement {
    fn from(address: &str) -> Self {
        RayPlacement::new(address)
    }
}

impl From<String> for RayPlacement {
    fn from(address: String) -> Self {
        RayPlacement::new(address)
    }
}

/// The runs in the pool registry at `runtime_dir` whose owner is dead: their actors may still
/// live on the cluster (their driver stuck, or its machine cut off), and a new pool's driver ends
/// them, as a new pool kills the local processes of dead runs.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn dead_runs(runtime_dir: &std::path::Path) -> Vec<String> {
    snakepit::registry::list_runs(runtime_dir)
        .into_iter()
        .filter_map(|(_, record)| record)
        .filter(|record| !snakepit::registry::owner_alive(record))
        .map(|record| record.run_id)
        .collect()
}

/// A TLS identity brought by the user for workers on a real cluster: the certificate (chain) and
/// key every worker serves, the certificate authority the pool trusts, and the name the pool
/// checks the workers' certificate against. PEM throughout. The key is never shown by `Debug`.
///
/// ```
/// use snakepit_grpc_bridge::TlsIdentity;
/// let identity = TlsIdentity::new("CA PEM", "CERT PEM", "KEY PEM", "workers.dspex.internal");
/// assert!(!format!("{identity:?}").contains("KEY PEM"));
/// ```
#[derive(Clone)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub struct TlsIdentity {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) domain: String,
}

impl TlsIdentity {
    /// The identity: `ca_pem` is what the pool trusts, `cert_pem`/`key_pem` what each worker
    /// serves, `domain` the name in the workers' certificate.
    pub fn new(
        ca_pem: impl Into<String>,
        cert_pem: impl Into<String>,
        key_pem: impl Into<String>,
        domain: impl Into<String>,
    ) -> Self {
        TlsIdentity {
            ca_pem: ca_pem.into(),
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            domain: domain.into(),
        }
    }

    /// The name the workers' certificate is checked against.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("domain", &self.domain)
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        for good in [
            "127.0.0.1:6379",
            "ray://head.svc:10001",
            "auto",
            "[::1]:6379",
        ] {
            assert!(RayPlacement::new(good).check().is_ok(), "{good}");
        }
        for bad in [
            "",
            "  ",
            "127.0.0.1",
            "http://h:1",
            "h:port",
            "h:1 x",
            ":6379",
        ] {
            assert!(RayPlacement::new(bad).check().is_err(), "{bad:?}");
        }
        assert!(RayPlacement::new("h:1").num_cpus(f64::NAN).check().is_err());
        assert!(RayPlacement::new("h:1").num_cpus(-1.0).check().is_err());
        assert!(RayPlacement::new("h:1").namespace("").check().is_err());
    }
}
