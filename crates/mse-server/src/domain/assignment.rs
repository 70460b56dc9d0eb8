//! What a node runs of a stored app: the assignment, from the app, its
//! resource and the platform's ACME CA.

use mse_api::node::{AcmeCa, AppTls, Assignment};

use super::app::App;
use super::lifecycle::CertificateOrigin;

/// Why an app deployed for an ACME certificate cannot start.
pub const NO_ACME_CA: &str = "the app was deployed for a browser-trusted (ACME) certificate, but \
     the platform has no ACME CA any more (mse-server --acme-directory): start it with one, or \
     deploy the app again (with --no-acme to keep the RA-TLS certificate)";

/// What a node runs of a stored app, with its resource's memory and cores
/// and the platform's ACME CA; an error (what the app's status will say)
/// when it cannot run as it was deployed.
pub fn assignment(
    app: &App,
    memory_mb: u64,
    cores: u64,
    acme: Option<&AcmeCa>,
) -> Result<Assignment, &'static str> {
    let tls = match (app.spec.certificate_origin, acme) {
        (CertificateOrigin::Owner, _) => AppTls::Owner {
            chain_pem: app.spec.ssl_certificate.clone().unwrap_or_default(),
        },
        (CertificateOrigin::Operator, _) => AppTls::Operator,
        (CertificateOrigin::Acme, Some(ca)) => AppTls::Acme(ca.clone()),
        // Its fingerprint names ACME: a node with the RA-TLS certificate
        // alone would fail its owner's verification for no clear reason.
        (CertificateOrigin::Acme, None) => return Err(NO_ACME_CA),
        (CertificateOrigin::SelfSigned, _) => AppTls::RaTls,
    };
    Ok(Assignment {
        app: app.id.clone(),
        domain: app.domain_name.clone(),
        application: app.spec.python_application.clone(),
        image: app.spec.docker.clone(),
        enclave_size: app.spec.enclave_size.clone(),
        healthcheck: app.spec.healthcheck_endpoint.clone(),
        tls,
        expires_at: app.expires_at,
        package_sha256: app.spec.code_sha256.clone(),
        package_bytes: u64::try_from(app.spec.code_bytes).unwrap_or(0),
        memory_mb,
        cores,
        // The store's to say (`Store::assigned_storage`).
        storage: None,
    })
}
