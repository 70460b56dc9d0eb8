//! Confidential hardware we do not have, emulated at the kernel's
//! interface: [`configfs`] serves configfs-tsm (the TDX and SEV-SNP guest
//! report interface) as a real mounted file system, so a node's provider
//! runs exactly the code it runs on the hardware; [`gramine`] serves
//! Gramine's `/dev/attestation` of an SGX enclave and [`loader`] its loader,
//! `gramine-sgx`, measuring what it builds; [`intel`] is Intel's DCAP
//! PKI (PCK certificates, TCB info, QE identity, CRLs) and its SGX and TDX
//! quotes; [`snp`] is AMD's ARK → ASK → VCEK chain and SEV-SNP reports.
//!
//! Every device here signs under a test root that only the tests trust: no
//! verifier takes its evidence for hardware.

pub mod configfs;
pub mod gramine;
pub mod http;
pub mod intel;
pub mod loader;
pub mod snp;
