//! The kinds of trusted execution environment a node runs in, named once
//! for every side: a node host states its kind when it joins, a resource
//! names the kinds it accepts, placement keeps to them, and an app shows
//! the kind of the node it runs on. `docs/attestation.md` says what each
//! kind proves.

use serde::{Deserialize, Serialize};

/// A kind of TEE.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// No hardware: quotes signed under the platform's simulation CA. What
    /// a host that says nothing runs.
    #[default]
    Simulation,
    /// Intel SGX, the app in a Gramine enclave.
    Sgx,
    /// Intel TDX, a confidential VM.
    Tdx,
    /// AMD SEV-SNP, a confidential VM.
    SevSnp,
}

impl Tee {
    /// Every kind, in order.
    pub const ALL: [Tee; 4] = [Tee::Simulation, Tee::Sgx, Tee::Tdx, Tee::SevSnp];

    /// The names of the quote providers, as `--quote-provider` takes them.
    pub const PROVIDERS: [&'static str; 4] = ["simulation", "gramine", "tdx", "sev-snp"];

    /// Its name: `simulation`, `sgx`, `tdx` or `sev-snp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Simulation => "simulation",
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
            Tee::SevSnp => "sev-snp",
        }
    }

    /// The quote provider a node of this kind uses: `simulation`,
    /// `gramine`, `tdx` or `sev-snp`.
    pub fn quote_provider(self) -> &'static str {
        match self {
            Tee::Sgx => "gramine",
            other => other.as_str(),
        }
    }

    /// The kind a quote provider (or a kind's own name) stands for.
    pub fn from_name(name: &str) -> Option<Tee> {
        Tee::ALL
            .into_iter()
            .find(|tee| tee.as_str() == name || tee.quote_provider() == name)
    }

    /// Whether evidence of this kind is signed by hardware.
    pub fn is_hardware(self) -> bool {
        self != Tee::Simulation
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tee {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Tee::from_name(text).ok_or_else(|| {
            format!("unknown TEE kind `{text}`: expected simulation, sgx, tdx or sev-snp")
        })
    }
}

/// Whether a resource that accepts `accepted` (none named: every kind)
/// takes a node of kind `tee`.
pub fn accepts(accepted: &[Tee], tee: Tee) -> bool {
    accepted.is_empty() || accepted.contains(&tee)
}

/// A list of kinds as stored and shown: names joined by commas.
pub fn join(tees: &[Tee]) -> String {
    tees.iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The kinds of a comma-separated list (the empty text: none named).
pub fn split(text: &str) -> Result<Vec<Tee>, String> {
    let mut tees: Vec<Tee> = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    tees.sort();
    tees.dedup();
    Ok(tees)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_providers_read_back() {
        for tee in Tee::ALL {
            assert_eq!(Tee::from_name(tee.as_str()), Some(tee));
            assert_eq!(Tee::from_name(tee.quote_provider()), Some(tee));
            let json = serde_json::to_string(&tee).unwrap();
            assert_eq!(json, format!("\"{}\"", tee.as_str()));
        }
        assert_eq!(Tee::from_name("gramine"), Some(Tee::Sgx));
        assert!("sev"
            .parse::<Tee>()
            .unwrap_err()
            .contains("unknown TEE kind `sev`"));
        assert_eq!(Tee::PROVIDERS, Tee::ALL.map(Tee::quote_provider));
    }

    #[test]
    fn lists_split_sorted_without_repeats_and_none_named_accepts_all() {
        assert_eq!(split("tdx, sgx,tdx").unwrap(), vec![Tee::Sgx, Tee::Tdx]);
        assert_eq!(split("").unwrap(), vec![]);
        assert!(split("tdx,nope").is_err());
        assert_eq!(join(&[Tee::Tdx, Tee::SevSnp]), "tdx,sev-snp");
        assert!(accepts(&[], Tee::Simulation));
        assert!(accepts(&[Tee::Tdx], Tee::Tdx));
        assert!(!accepts(&[Tee::Tdx], Tee::Simulation));
    }
}
