//! Per-run certificate authority for the engines' mutual TLS (port 2376).
//!
//! Everything is generated in memory with rcgen. Private keys are held as
//! [`SecretString`], so a stray `{:?}` prints `[REDACTED]`; they reach disk only inside
//! node containers (removed at teardown) and, for `--keep`, in the run's client directory
//! (mode 0700, removed by `down`).

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CidrSubnet, DnType, ExtendedKeyUsagePurpose, GeneralSubtree,
    IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
};
use secrecy::{ExposeSecret, SecretString};

/// The run's CA and the harness's client certificate.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub client: CertBundle,
}

/// A certificate, its key and the CA that signed it, all PEM.
#[derive(Clone)]
pub struct CertBundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: SecretString,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle")
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl Pki {
    pub fn new(run_id: &str) -> anyhow::Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("swarm-e2e run {run_id} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?).context("creating the run CA")?;
        let client = {
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name.push(DnType::CommonName, "swarm-e2e client");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            sign(&ca, p)?
        };
        Ok(Pki { ca, client })
    }

    /// A server certificate for one engine, valid for its hostname and addresses.
    pub fn server(&self, hostname: &str, addresses: &[IpAddr]) -> anyhow::Result<CertBundle> {
        let mut sans = vec![hostname.to_string(), "localhost".to_string()];
        sans.extend(addresses.iter().map(|a| a.to_string()));
        sans.push("127.0.0.1".into());
        let mut p = CertificateParams::new(sans)?;
        p.distinguished_name.push(DnType::CommonName, hostname);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(&self.ca, p)
    }

    /// An issuer for one droplet: a CA certificate under the run's CA that may sign only
    /// server certificates for the name `hostname` (and `localhost`), at any address,
    /// with no CA below it. A droplet learns its addresses only when it boots, so its
    /// boot script mints its own server certificate with them (which the docker CLI
    /// needs: it verifies the address it connects to); the harness still verifies the
    /// engine by name.
    pub fn node_issuer(&self, hostname: &str) -> anyhow::Result<CertBundle> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name
            .push(DnType::CommonName, format!("swarm-e2e issuer for {hostname}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName(hostname.to_string()),
                GeneralSubtree::DnsName("localhost".into()),
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ],
            excluded_subtrees: Vec::new(),
        });
        sign(&self.ca, p)
    }

    /// Writes the client files in the layout the docker CLI expects for
    /// `DOCKER_CERT_PATH` (ca.pem, cert.pem, key.pem), directory mode 0700.
    pub fn write_client_dir(&self, dir: &Path) -> anyhow::Result<()> {
        write_file(&dir.join("ca.pem"), &self.client.ca_pem, 0o644)?;
        write_file(&dir.join("cert.pem"), &self.client.cert_pem, 0o644)?;
        write_file(&dir.join("key.pem"), self.client.key_pem.expose_secret(), 0o600)?;
        Ok(())
    }
}

/// Writes `body` to `path` with permissions `mode`, creating its directory readable by
/// its owner only (it holds a private key).
pub(crate) fn write_file(path: &Path, body: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(body.as_bytes())?;
    Ok(())
}

fn sign(ca: &CertifiedIssuer<'static, KeyPair>, params: CertificateParams) -> anyhow::Result<CertBundle> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(CertBundle {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: SecretString::from(key.serialize_pem()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_keys() {
        let pki = Pki::new("t1").unwrap();
        let server = pki.server("node-1", &["172.18.0.2".parse().unwrap()]).unwrap();
        let shown = format!("{:?} {:?}", pki.client, server);
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(server.key_pem.expose_secret().contains("PRIVATE KEY"));
        assert!(server.cert_pem.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn client_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let pki = Pki::new("t2").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        pki.write_client_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let key_mode = std::fs::metadata(dir.join("key.pem")).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
    }
}
