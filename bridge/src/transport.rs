//! How the owner reaches its workers: the transport, the run's credentials (token and TLS
//! certificate) and the gRPC channel to one worker's address.

use std::path::PathBuf;
#[cfg(feature = "tls")]
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use snakepit::BoxError;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::bridge_service_client::BridgeServiceClient;

/// How Rust and the workers talk.
///
/// The TCP transports prepare for workers on other hosts; any local user can reach a TCP port,
/// so every call on them carries a secret token made for the run (32 random bytes, handed to the
/// workers in a 0600 file, never in their arguments) that the worker compares in constant time;
/// a call without it fails `UNAUTHENTICATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// A Unix domain socket inside a private (0700) directory. The default.
    #[default]
    UnixSocket,
    /// TCP on 127.0.0.1 with a port the worker picks, plaintext, with the run token.
    TcpLoopback,
    /// Like [`TcpLoopback`](Transport::TcpLoopback), over TLS (rustls on the Rust side): each run
    /// makes a self-signed certificate for `localhost`, and the client trusts exactly that one.
    /// With the `tls` feature (on by default).
    #[cfg(feature = "tls")]
    TcpLoopbackTls,
}

impl Transport {
    pub(crate) fn is_tcp(self) -> bool {
        !matches!(self, Transport::UnixSocket)
    }
}

/// The metadata every call on a TCP transport carries: `authorization: Bearer <run token>`.
#[derive(Clone, Default)]
pub(crate) struct RunToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for RunToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "RunToken([REDACTED])"
        } else {
            "RunToken(None)"
        })
    }
}

impl tonic::service::Interceptor for RunToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// The gRPC client of one worker.
pub(crate) type Client =
    BridgeServiceClient<tonic::service::interceptor::InterceptedService<Channel, RunToken>>;

/// 32 bytes from the operating system's CSPRNG, as hex.
pub(crate) fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl RunToken {
    /// A token made for the run, and its metadata value.
    pub(crate) fn generate() -> std::io::Result<(String, RunToken)> {
        let token = new_secret()?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| std::io::Error::other("the token is not valid metadata"))?;
        Ok((token, RunToken(Some(value))))
    }
}

/// What a TLS client trusts: the run's certificate (nothing without the `tls` feature).
#[cfg(feature = "tls")]
pub(crate) type TlsCa = tonic::transport::Certificate;
/// What a TLS client trusts: the run's certificate (nothing without the `tls` feature).
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub(crate) enum TlsCa {}

/// A self-signed certificate for `localhost` made for the run: (certificate PEM, key PEM).
#[cfg(feature = "tls")]
pub(crate) fn self_signed_certificate() -> std::io::Result<(String, String)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| std::io::Error::other(format!("cannot make a TLS certificate: {e}")))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// A rustls client configuration that trusts exactly the certificates in `ca_pem` (ring).
#[cfg(feature = "tls")]
pub(crate) fn rustls_client_config(
    ca_pem: &[u8],
) -> Result<tokio_rustls::rustls::ClientConfig, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem) {
        let certificate = certificate.map_err(|e| format!("the CA certificate: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("the CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in the CA's PEM".to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A gRPC channel to a worker's announced address: `unix:/path` or `tcp:host:port` (over TLS
/// when `tls` is given: trusting exactly that certificate authority, checking the worker's
/// certificate against that name).
pub(crate) async fn channel_for(
    address: &str,
    tls: Option<(&TlsCa, &str)>,
) -> Result<Channel, BoxError> {
    if let Some(path) = address.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        // The URI is not used for a connector-based channel, but must parse.
        let channel = Endpoint::try_from("http://[::1]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await?;
        Ok(channel)
    } else if let Some(host_port) = address.strip_prefix("tcp:") {
        let endpoint = match tls {
            #[cfg(feature = "tls")]
            Some((ca, domain)) => Endpoint::try_from(format!("https://{host_port}"))?.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(ca.clone())
                    .domain_name(domain),
            )?,
            #[cfg(not(feature = "tls"))]
            Some((never, _)) => match *never {},
            None => Endpoint::try_from(format!("http://{host_port}"))?,
        };
        Ok(endpoint.tcp_nodelay(true).connect().await?)
    } else {
        Err(format!("the worker announced an unknown address {address:?}").into())
    }
}
