//! Talking to engines: the host engine (unix socket or DOCKER_HOST) and the node engines
//! (mutual TLS on 2376, certificates kept in memory).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use futures_util::StreamExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret;

use crate::pki::CertBundle;
use crate::wait::poll_until;

/// Port every node engine listens on, with mutual TLS, as docker-machine did.
pub const ENGINE_TLS_PORT: u16 = 2376;

/// Request timeout for engine API calls (headers only; streams are not bounded by it).
const API_TIMEOUT_SECS: u64 = 60;

/// Connects to the host engine the local target builds on.
///
/// Refuses a DOCKER_HOST that points at a swarm-e2e node (as exported from `--keep`):
/// the next run would otherwise build its cluster inside that node.
pub fn host_engine() -> anyhow::Result<Docker> {
    if let Ok(cert_path) = std::env::var("DOCKER_CERT_PATH")
        && cert_path.contains("swarm-e2e")
        && std::env::var_os("DOCKER_HOST").is_some()
    {
        bail!(
            "DOCKER_HOST points at a swarm-e2e node (DOCKER_CERT_PATH={cert_path})\n\
                 hint: run `unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH` so the local target uses the host engine"
        );
    }
    Docker::connect_with_defaults().context("connecting to the host Docker engine")
}

/// Checks the host engine answers, with a hint on how to start one when it does not.
pub async fn ping_host_engine(docker: &Docker) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!(
            "no Docker engine answers on {}: {e}\n\
             hint: start one, e.g. `sudo dockerd >/var/log/dockerd.log 2>&1 &` (Debian: `apt-get install docker.io`), \
             or set DOCKER_HOST",
            host_description()
        ),
        Err(_) => bail!(
            "the Docker engine on {} did not answer within 5s\nhint: check `docker info`",
            host_description()
        ),
    }
}

fn host_description() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// How a node engine's server certificate is matched, beyond being issued by the run CA.
#[derive(Debug, Clone, Copy)]
pub enum ServerIdentity<'a> {
    /// By the address connected to (local nodes: certificates are issued once the
    /// address is known).
    Address,
    /// By the node's name, whatever address it has (droplets: their certificates are
    /// rendered into `user_data` before any address exists).
    Name(&'a str),
}

/// A client for one node engine over mutual TLS, verifying the server certificate
/// against the run's CA and `identity`. Connections are pooled.
pub fn tls_engine(addr: SocketAddr, creds: &CertBundle, identity: ServerIdentity) -> anyhow::Result<Docker> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        roots.add(cert.context("reading the run CA")?)?;
    }
    let roots = Arc::new(roots);
    let chain = CertificateDer::pem_slice_iter(creds.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the client certificate")?;
    // The error of from_pem_slice names no key material, only what went wrong.
    let key = PrivateKeyDer::from_pem_slice(creds.key_pem.expose_secret().as_bytes())
        .map_err(|e| anyhow::anyhow!("reading the client key: {e}"))?;
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match identity {
        ServerIdentity::Address => builder.with_root_certificates(roots),
        ServerIdentity::Name(name) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .context("building the certificate verifier")?;
            let name = rustls::pki_types::ServerName::try_from(name.to_string())
                .with_context(|| format!("`{name}` is not a valid TLS server name"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(VerifyAsName { webpki, name }))
        }
    };
    let config = builder
        .with_client_auth_cert(chain, key)
        .context("building the TLS client configuration")?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = Arc::new(Client::builder(TokioExecutor::new()).build(https));
    let transport = move |req: BollardRequest| {
        let client = Arc::clone(&client);
        async move { client.request(req).await.map_err(bollard::errors::Error::from) }
    };
    let url = format!("https://{addr}");
    Ok(Docker::connect_with_custom_transport(
        transport,
        Some(url),
        API_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )?)
}

/// Full WebPKI verification against the run CA, for a fixed expected name instead of
/// the address in the URL. Only the name differs from the default verifier.
#[derive(Debug)]
struct VerifyAsName {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for VerifyAsName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _address: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.webpki
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Polls `/_ping` until the engine answers, bounded by `limit`. Returns the time it took.
pub async fn wait_ready(docker: &Docker, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    poll_until(limit, Duration::from_millis(50), || async {
        match tokio::time::timeout(Duration::from_secs(2), docker.ping()).await {
            Ok(Ok(_)) => Ok(Some(())),
            Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
            Err(_) => Err(anyhow::anyhow!("ping timed out")),
        }
    })
    .await
    .context("engine did not answer /_ping")?;
    Ok(start.elapsed())
}

/// Runs a command in a container; returns exit code and combined output.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> anyhow::Result<(i64, String)> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, None).await? {
        while let Some(chunk) = output.next().await {
            text.push_str(&chunk?.to_string());
        }
    }
    let code = docker.inspect_exec(&created.id).await?.exit_code.unwrap_or(-1);
    Ok((code, text))
}

/// Removes a container, running or not (probes and helpers the harness started).
pub(crate) async fn remove_forced(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .build();
    docker.remove_container(id, Some(opts)).await
}
