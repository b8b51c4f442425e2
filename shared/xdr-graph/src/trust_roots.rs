//! The platform's trusted root certificates, read once per process for both HTTP stacks.
//!
//! A function has two: reqwest for Entra and Graph, the AWS SDK's for S3, DynamoDB and Secrets
//! Manager. Left to themselves, each reads and parses the system's store (the bundle and, on a
//! Debian-like system, every file of `/etc/ssl/certs` once more) before the first invocation,
//! and the SDK parses its roots again for every service client it builds: on the development
//! machine that was 8 of the 21 ms from start to the first poll of the Runtime API (README,
//! "Performance"). Read once, the roots are handed to both. What is trusted does not change: the
//! same store, found the same way (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured as before;
//! `both_http_stacks_trust_the_system_store_and_nothing_else`).

use std::sync::LazyLock;

use base64::Engine;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tracing::warn;

static PLATFORM_ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    if !found.errors.is_empty() {
        // Paths and parse errors only: the store holds no secret.
        warn!(errors = found.errors.len(), first = %found.errors[0], "Some of the system's root certificates could not be read.");
    }
    usable(found.certs)
});

/// The certificates that a TLS verifier can take as roots, each once. Both stacks refuse a
/// whole store for one root they cannot parse (the SDK's aborts the process), where each would
/// otherwise have skipped it. A Debian-like system lists every root twice (in the bundle and
/// as a file of its own), and every copy would be parsed again by each stack.
fn usable(mut certs: Vec<CertificateDer<'static>>) -> Vec<CertificateDer<'static>> {
    certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    certs.dedup();
    let mut trial = RootCertStore::empty();
    certs.into_iter().filter(|cert| trial.add(cert.clone()).is_ok()).collect()
}

/// The system's trusted roots, read on first use. Empty when the system has none, and then
/// each stack is left to its own default (and its own error).
pub fn platform_roots() -> &'static [CertificateDer<'static>] {
    &PLATFORM_ROOTS
}

/// The same roots as one PEM bundle, for the AWS SDK, which takes PEM.
pub fn platform_roots_pem() -> String {
    to_pem(platform_roots())
}

fn to_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut pem = String::new();
    for cert in certs {
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        // RFC 7468: lines of 64 characters.
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn the_pem_bundle_reads_back_as_the_same_certificates() {
        let roots = platform_roots();
        assert!(!roots.is_empty(), "this machine has a trust store (ca-certificates)");
        let pem = to_pem(roots);
        let read: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(read, roots);
        assert!(pem.lines().all(|line| line.len() <= 64));
    }

    #[test]
    fn a_root_no_verifier_can_parse_is_left_out_not_fatal() {
        let good = platform_roots()[0].clone();
        let broken = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(usable(vec![broken, good.clone(), good.clone()]), vec![good]);
    }
}
