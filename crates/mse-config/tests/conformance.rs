//! The `mse.toml` conformance suite: each case is a small file (plus the files
//! it names) with the expected outcome. Every rule of SPEC section 2 has a
//! case that accepts a valid file and one that rejects an invalid one.

use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use mse_config::{validate, AppConfig, Expiry, MemoryFs, Options, Report, StorageConfig};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::pkcs1::EncodeRsaPrivateKey;

const CONFIG: &str = "/proj/mse.toml";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

const BASE: &str = r#"name = "app"
project = "default"
resource = "free"

[code]
location = "code"
docker = "ghcr.io/cosmian/mse-flask:20230124182826"
python_application = "app:app"
healthcheck_endpoint = "/"
"#;

/// What a case must produce.
enum Expect {
    /// Valid, no warnings, and the check holds.
    Valid(fn(&AppConfig) -> bool),
    /// Valid, with a warning on `key` whose message contains the fragment.
    Warning(&'static str, &'static str, fn(&AppConfig) -> bool),
    /// Invalid, with (at least) these errors: key and message fragment.
    Invalid(&'static [(&'static str, &'static str)]),
    /// Invalid, with an error at this key, line and column.
    InvalidAt(&'static str, &'static str, usize, usize),
}

struct Case {
    name: &'static str,
    toml: String,
    files: Vec<(&'static str, Vec<u8>)>,
    untrusted_ssl: bool,
    expect: Expect,
}

fn case(name: &'static str, toml: impl Into<String>, expect: Expect) -> Case {
    Case {
        name,
        toml: toml.into(),
        files: vec![("/proj/code/app.py", b"app = None\n".to_vec())],
        untrusted_ssl: false,
        expect,
    }
}

impl Case {
    fn file(mut self, path: &'static str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path, content.into()));
        self
    }
    fn without_default_app(mut self) -> Self {
        self.files.retain(|(p, _)| *p != "/proj/code/app.py");
        self
    }
    fn untrusted(mut self) -> Self {
        self.untrusted_ssl = true;
        self
    }
    fn with_ssl(self, tls: &Tls) -> Self {
        self.file("/proj/cert.pem", tls.cert.clone())
            .file("/proj/key.pem", tls.key.clone())
    }
}

fn any(_: &AppConfig) -> bool {
    true
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in the base file");
    BASE.replacen(from, to, 1)
}

fn without(line: &str) -> String {
    replace(&format!("{line}\n"), "")
}

fn top(extra: &str) -> String {
    replace(
        "resource = \"free\"\n",
        &format!("resource = \"free\"\n{extra}\n"),
    )
}

fn paid(extra: &str) -> String {
    replace(
        "resource = \"free\"\n",
        &format!("resource = \"paid\"\n{extra}\n"),
    )
}

const SSL: &str = "\n[ssl]\ndomain_name = \"app.example.com\"\nprivate_key = \"key.pem\"\ncertificate = \"cert.pem\"\n";

/// The base file with a `[storage]` section holding `lines`.
fn storage(lines: &str) -> String {
    format!("{BASE}\n[storage]\n{lines}\n")
}

fn kept(size_bytes: u64) -> Option<StorageConfig> {
    Some(StorageConfig {
        persistent: true,
        size_bytes,
    })
}

fn with_ssl_section(toml: String, domain: &str) -> String {
    toml + &SSL.replace("app.example.com", domain)
}

/// A certificate and key, as PEM.
struct Tls {
    cert: String,
    key: String,
}

struct Fixtures {
    exact: Tls,
    wildcard: Tls,
    expired: Tls,
    mismatched: Tls,
    rsa_pkcs1: Tls,
    ec_sec1: Tls,
}

fn cert_for(names: &[&str], key: &rcgen::KeyPair, not_after: (i32, u8, u8)) -> String {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params.self_signed(key).unwrap().pem()
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let exact = Tls {
            cert: cert_for(&["app.example.com"], &key, (2027, 1, 1)),
            key: key.serialize_pem(),
        };
        let wildcard = Tls {
            cert: cert_for(&["*.example.com"], &key, (2027, 1, 1)),
            key: key.serialize_pem(),
        };
        let expired = Tls {
            cert: cert_for(&["app.example.com"], &key, (2025, 6, 1)),
            key: key.serialize_pem(),
        };
        let mismatched = Tls {
            cert: cert_for(&["app.example.com"], &key, (2027, 1, 1)),
            key: other.serialize_pem(),
        };
        let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let rsa_pkcs8 = rsa_key.to_pkcs8_pem(Default::default()).unwrap();
        let rsa_pair = rcgen::KeyPair::from_pem(&rsa_pkcs8).unwrap();
        let rsa_pkcs1 = Tls {
            cert: cert_for(&["app.example.com"], &rsa_pair, (2027, 1, 1)),
            key: rsa_key
                .to_pkcs1_pem(Default::default())
                .unwrap()
                .to_string(),
        };
        let ec = p256::SecretKey::from_pkcs8_pem(&key.serialize_pem()).unwrap();
        let ec_sec1 = Tls {
            cert: exact.cert.clone(),
            key: ec.to_sec1_pem(Default::default()).unwrap().to_string(),
        };
        Fixtures {
            exact,
            wildcard,
            expired,
            mismatched,
            rsa_pkcs1,
            ec_sec1,
        }
    })
}

fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, mi, s).unwrap()
}

fn cases() -> Vec<Case> {
    let f = fixtures();
    vec![
        // ---- valid files ----
        case("the seed's example file is valid", BASE, Expect::Valid(|c| {
            c.name == "app" && c.code.location == Path::new("/proj/code")
                && c.code.module_file == Path::new("/proj/code/app.py")
                && c.expiry == Expiry::FreePlan { hours: 4 }
        })),
        case("expiration_date string without offset is UTC", paid("expiration_date = \"2026-06-01 12:00:00\""),
            Expect::Valid(|c| c.expiry == Expiry::ExpirationDate { at: utc(2026, 6, 1, 12, 0, 0) })),
        case("expiration_date string with offset and microseconds", paid("expiration_date = \"2026-06-01 12:00:00.250000+02:00\""),
            Expect::Valid(|c| c.expiration_date.unwrap().timestamp_subsec_millis() == 250
                && c.expiration_date.unwrap() - chrono::Duration::milliseconds(250) == utc(2026, 6, 1, 10, 0, 0))),
        case("expiration_date TOML offset datetime", paid("expiration_date = 2026-06-01T12:00:00-01:00"),
            Expect::Valid(|c| c.expiration_date == Some(utc(2026, 6, 1, 13, 0, 0)))),
        case("expiration_date TOML local datetime is UTC", paid("expiration_date = 2026-06-01 12:00:00"),
            Expect::Valid(|c| c.expiration_date == Some(utc(2026, 6, 1, 12, 0, 0)))),
        case("expiration_date TOML local date is midnight UTC", paid("expiration_date = 2026-06-01"),
            Expect::Valid(|c| c.expiration_date == Some(utc(2026, 6, 1, 0, 0, 0)))),
        case("free resource overrides expiration_date with a warning", top("expiration_date = \"2026-06-01 12:00:00\""),
            Expect::Warning("expiration_date", "4 hours after deployment", |c| c.expiry == Expiry::FreePlan { hours: 4 })),
        case("non-free resource without date uses the resource default", paid(""),
            Expect::Valid(|c| c.expiry == Expiry::ResourceDefault && c.resource == "paid")),
        case("secrets file holding a JSON object is accepted", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/\"\nsecrets = \"secrets.json\""),
            Expect::Valid(|c| c.code.secrets.as_deref() == Some(Path::new("/proj/secrets.json"))))
            .file("/proj/secrets.json", r#"{"API_KEY": "hunter2", "n": 1}"#),
        case("secrets path may be absolute", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/\"\nsecrets = \"/etc/app/s.json\""),
            Expect::Valid(|c| c.code.secrets.as_deref() == Some(Path::new("/etc/app/s.json"))))
            .file("/etc/app/s.json", "{}"),
        case("location dot is the folder of mse.toml", replace("location = \"code\"", "location = \".\""),
            Expect::Valid(|c| c.code.location == Path::new("/proj") && c.code.module_file == Path::new("/proj/app.py")))
            .without_default_app().file("/proj/app.py", "app = 1"),
        case("location is relative to mse.toml, not the working directory", replace("location = \"code\"", "location = \"../shared/src\""),
            Expect::Valid(|c| c.code.location == Path::new("/shared/src")))
            .file("/shared/src/app.py", "app = 1"),
        case("package module resolves to __init__.py", replace("python_application = \"app:app\"", "python_application = \"web.api:application\""),
            Expect::Valid(|c| c.code.module_file == Path::new("/proj/code/web/api/__init__.py")))
            .file("/proj/code/web/api/__init__.py", ""),
        case("dotted module resolves to a .py file", replace("python_application = \"app:app\"", "python_application = \"web.main:app\""),
            Expect::Valid(|c| c.code.module_file == Path::new("/proj/code/web/main.py")))
            .file("/proj/code/web/main.py", ""),
        case("ssl with exact SAN takes the certificate's notAfter", with_ssl_section(paid(""), "app.example.com"),
            Expect::Valid(|c| c.expiry == Expiry::Certificate { at: utc(2027, 1, 1, 0, 0, 0) }
                && c.ssl.as_ref().unwrap().private_key == Path::new("/proj/key.pem")))
            .with_ssl(&f.exact),
        case("ssl domain covered by a wildcard SAN", with_ssl_section(paid(""), "app.example.com"), Expect::Valid(any))
            .with_ssl(&f.wildcard),
        case("ssl domain matching is case-insensitive", with_ssl_section(paid(""), "App.Example.COM"),
            Expect::Valid(|c| c.ssl.as_ref().unwrap().domain_name == "app.example.com"))
            .with_ssl(&f.exact),
        case("ssl with expiration_date before notAfter keeps the date", with_ssl_section(paid("expiration_date = \"2026-03-01 00:00:00\""), "app.example.com"),
            Expect::Valid(|c| c.expiry == Expiry::ExpirationDate { at: utc(2026, 3, 1, 0, 0, 0) }))
            .with_ssl(&f.exact),
        case("ssl with an RSA PKCS#1 key", with_ssl_section(paid(""), "app.example.com"), Expect::Valid(any))
            .with_ssl(&f.rsa_pkcs1),
        case("ssl with a SEC1 EC key", with_ssl_section(paid(""), "app.example.com"), Expect::Valid(any))
            .with_ssl(&f.ec_sec1),
        case("untrusted-ssl ignores even a broken [ssl] section", with_ssl_section(BASE.to_string(), "not a domain"),
            Expect::Warning("ssl", "ignored because of --untrusted-ssl", |c| c.ssl.is_none()))
            .untrusted(),
        case("local docker image is a warning", replace("ghcr.io/cosmian/mse-flask:20230124182826", "mse-flask:dev"),
            Expect::Warning("code.docker", "names no registry", any)),
        case("latest docker tag is a warning", replace(":20230124182826", ":latest"),
            Expect::Warning("code.docker", "not pinned", any)),
        case("untagged docker image is a warning", replace(":20230124182826", ""),
            Expect::Warning("code.docker", "not pinned", any)),
        case("digest-pinned docker image is valid", replace(":20230124182826", &format!("@sha256:{}", "0f".repeat(32))),
            Expect::Valid(|c| c.code.image.digest.is_some())),
        case("name may be any 255 characters of text", replace("name = \"app\"", &format!("name = \"{}\"", "é".repeat(255))),
            Expect::Valid(|c| c.name.chars().count() == 255)),
        case("resource of 16 characters is valid", replace("resource = \"free\"", "resource = \"abcdefghijklmnop\""), Expect::Valid(any)),
        case("healthcheck endpoint may carry a query", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/health?deep=1\""), Expect::Valid(any)),
        case("without [storage] the home is ephemeral", BASE, Expect::Valid(|c| c.storage.is_none())),
        case("persistent storage keeps 256 MiB by default", storage("persistent = true"),
            Expect::Valid(|c| c.storage == kept(256 << 20) && c.storage.unwrap().persistent_size() == Some(256 << 20))),
        case("storage size caps the persistent home", storage("persistent = true\nsize = \"512M\""),
            Expect::Valid(|c| c.storage == kept(512 << 20))),
        case("storage size of 4G is the largest", storage("persistent = true\nsize = \"4G\""),
            Expect::Valid(|c| c.storage == kept(4 << 30))),
        case("persistent = false keeps nothing", storage("persistent = false"),
            Expect::Valid(|c| c.storage.unwrap().persistent_size().is_none())),
        case("tables may be written inline", "name = \"a\"\nproject = \"p\"\nresource = \"free\"\ncode = { location = \"code\", docker = \"ghcr.io/a/b:1\", python_application = \"app:app\", healthcheck_endpoint = \"/\" }\n",
            Expect::Valid(any)),
        // ---- invalid files ----
        case("syntax errors give line and column", replace("project = \"default\"", "project = \"default"),
            Expect::InvalidAt("", "syntax error", 2, 19)),
        case("duplicate keys are refused", top("name = \"again\""), Expect::Invalid(&[("", "duplicate key")])),
        case("empty file reports every missing key at once", "",
            Expect::Invalid(&[("name", "missing mandatory key `name`"), ("project", "missing"), ("resource", "missing"), ("code", "missing mandatory section [code]")])),
        case("missing name", without("name = \"app\""), Expect::Invalid(&[("name", "missing mandatory key `name`")])),
        case("missing project", without("project = \"default\""), Expect::Invalid(&[("project", "missing mandatory key `project`")])),
        case("missing resource", without("resource = \"free\""), Expect::Invalid(&[("resource", "missing mandatory key `resource`")])),
        case("code must be a table", "name = \"a\"\nproject = \"p\"\nresource = \"free\"\ncode = \"x\"\n", Expect::InvalidAt("code", "must be a table", 4, 8)),
        case("missing code.location", without("location = \"code\""), Expect::InvalidAt("code.location", "missing mandatory key `location` in [code]", 5, 2)),
        case("missing code.docker", without("docker = \"ghcr.io/cosmian/mse-flask:20230124182826\""), Expect::Invalid(&[("code.docker", "missing mandatory key `docker`")])),
        case("missing code.python_application", without("python_application = \"app:app\""), Expect::Invalid(&[("code.python_application", "missing mandatory")])),
        case("missing code.healthcheck_endpoint", without("healthcheck_endpoint = \"/\""), Expect::Invalid(&[("code.healthcheck_endpoint", "missing mandatory")])),
        case("name must be a string", replace("name = \"app\"", "name = 12"), Expect::InvalidAt("name", "must be a string, found an integer", 1, 8)),
        case("name must not be empty", replace("name = \"app\"", "name = \"\""), Expect::Invalid(&[("name", "must not be empty")])),
        case("name is at most 255 characters", replace("name = \"app\"", &format!("name = \"{}\"", "n".repeat(256))), Expect::Invalid(&[("name", "at most 255")])),
        case("project is at most 255 characters", replace("project = \"default\"", &format!("project = \"{}\"", "p".repeat(256))), Expect::Invalid(&[("project", "at most 255")])),
        case("resource is at most 16 characters", replace("resource = \"free\"", "resource = \"abcdefghijklmnopq\""), Expect::Invalid(&[("resource", "at most 16")])),
        case("name must not hold control characters", replace("name = \"app\"", "name = \"a\\u0007b\""), Expect::Invalid(&[("name", "control characters")])),
        case("unknown top-level key suggests the right one", replace("project = ", "projet = "),
            Expect::Invalid(&[("projet", "unknown key `projet`"), ("project", "missing")])),
        case("unknown key in [code] is refused", replace("healthcheck_endpoint", "helthcheck_endpoint"),
            Expect::Invalid(&[("code.helthcheck_endpoint", "unknown key `helthcheck_endpoint` in [code]")])),
        case("unknown table is refused", BASE.to_string() + "\n[sssl]\ndomain_name = \"x\"\n", Expect::Invalid(&[("sssl", "unknown key `sssl`")])),
        case("a [code] key at the top level is refused", top("secrets = \"s.json\""), Expect::Invalid(&[("secrets", "unknown key `secrets` at the top level")])),
        case("unknown key in [ssl] is refused", with_ssl_section(paid(""), "app.example.com") + "chain = \"x\"\n",
            Expect::Invalid(&[("ssl.chain", "unknown key `chain` in [ssl]")])).with_ssl(&f.exact),
        case("expiration_date in another format is refused", paid("expiration_date = \"01/06/2026\""),
            Expect::Invalid(&[("expiration_date", "YYYY-MM-DD HH:MM:SS")])),
        case("expiration_date must be a date", paid("expiration_date = 1767225600"), Expect::Invalid(&[("expiration_date", "must be a date, found an integer")])),
        case("expiration_date in the past is refused", paid("expiration_date = \"2025-12-31 23:59:59\""),
            Expect::Invalid(&[("expiration_date", "is in the past")])),
        case("expiration_date equal to now is refused", paid("expiration_date = \"2026-01-01 00:00:00\""),
            Expect::Invalid(&[("expiration_date", "is in the past")])),
        case("expiration_date in the past is refused even on the free resource", top("expiration_date = \"2020-01-01 00:00:00\""),
            Expect::Invalid(&[("expiration_date", "is in the past")])),
        case("expiration_date as a bare time is refused", paid("expiration_date = 12:00:00"), Expect::Invalid(&[("expiration_date", "without a date")])),
        case("expiration_date on an impossible day is refused", paid("expiration_date = \"2026-02-30 00:00:00\""), Expect::Invalid(&[("expiration_date", "calendar date")])),
        case("healthcheck endpoint must start with a slash", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"health\""),
            Expect::Invalid(&[("code.healthcheck_endpoint", "must start with `/`")])),
        case("python_application needs a colon", replace("\"app:app\"", "\"app\""), Expect::Invalid(&[("code.python_application", "module:variable")])),
        case("python_application variable must be an identifier", replace("\"app:app\"", "\"app:my-app\""), Expect::Invalid(&[("code.python_application", "not a Python identifier")])),
        case("python_application module must not be a keyword", replace("\"app:app\"", "\"import:app\""), Expect::Invalid(&[("code.python_application", "Python keyword")])),
        case("python_application module must exist in code.location", replace("\"app:app\"", "\"main:app\""),
            Expect::Invalid(&[("code.python_application", "module `main` not found")])),
        case("code.location must exist", replace("location = \"code\"", "location = \"missing\""),
            Expect::Invalid(&[("code.location", "folder /proj/missing does not exist")])),
        case("code.location must be a folder", replace("location = \"code\"", "location = \"code/app.py\""),
            Expect::Invalid(&[("code.location", "is not a folder")])),
        case("code.location must not be empty", replace("location = \"code\"", "location = \"\""), Expect::Invalid(&[("code.location", "must not be empty")])),
        case("docker reference must be well formed", replace("ghcr.io/cosmian/mse-flask", "ghcr.io/Cosmian/MSE"),
            Expect::Invalid(&[("code.docker", "must be lowercase")])),
        case("secrets file must exist", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/\"\nsecrets = \"nope.json\""),
            Expect::Invalid(&[("code.secrets", "secrets file /proj/nope.json: no such file")])),
        case("secrets file must be JSON", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/\"\nsecrets = \"s.json\""),
            Expect::Invalid(&[("code.secrets", "is not valid JSON")])).file("/proj/s.json", "API_KEY=hunter2"),
        case("secrets file must hold an object", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/\"\nsecrets = \"s.json\""),
            Expect::Invalid(&[("code.secrets", "must hold a JSON object, not an array")])).file("/proj/s.json", "[1, 2]"),
        case("secrets must be a path string", replace("healthcheck_endpoint = \"/\"", "healthcheck_endpoint = \"/\"\nsecrets = { a = 1 }"),
            Expect::Invalid(&[("code.secrets", "must be a string, found a table")])),
        case("ssl requires all three keys", paid("") + "\n[ssl]\ndomain_name = \"app.example.com\"\n",
            Expect::Invalid(&[("ssl.private_key", "missing mandatory key `private_key` in [ssl]"), ("ssl.certificate", "missing mandatory key `certificate`")])),
        case("ssl domain must be in the certificate", with_ssl_section(paid(""), "other.example.org"),
            Expect::Invalid(&[("ssl.domain_name", "not valid for `other.example.org`: its DNS names are app.example.com")])).with_ssl(&f.exact),
        case("ssl wildcard covers one label only", with_ssl_section(paid(""), "a.app.example.com"),
            Expect::Invalid(&[("ssl.domain_name", "not valid for")])).with_ssl(&f.wildcard),
        case("ssl private key must match the certificate", with_ssl_section(paid(""), "app.example.com"),
            Expect::Invalid(&[("ssl.private_key", "does not match the certificate")])).with_ssl(&f.mismatched),
        case("ssl certificate must not be expired", with_ssl_section(paid(""), "app.example.com"),
            Expect::Invalid(&[("ssl.certificate", "expired on 2025-06-01")])).with_ssl(&f.expired),
        case("ssl expiration_date must not be after notAfter", with_ssl_section(paid("expiration_date = \"2027-06-01 00:00:00\""), "app.example.com"),
            Expect::Invalid(&[("expiration_date", "after the certificate's expiry 2027-01-01 00:00:00 UTC")])).with_ssl(&f.exact),
        case("ssl certificate must be PEM", with_ssl_section(paid(""), "app.example.com"),
            Expect::Invalid(&[("ssl.certificate", "no `BEGIN CERTIFICATE` block")]))
            .file("/proj/cert.pem", "garbage").file("/proj/key.pem", f.exact.key.clone()),
        case("ssl private key file must exist", with_ssl_section(paid(""), "app.example.com"),
            Expect::Invalid(&[("ssl.private_key", "private key file /proj/key.pem cannot be read: no such file")])).file("/proj/cert.pem", f.exact.cert.clone()),
        case("ssl domain must be a domain name", with_ssl_section(paid(""), "bad_label.example.com"),
            Expect::Invalid(&[("ssl.domain_name", "not a valid domain name")])).with_ssl(&f.exact),
        case("storage size without persistent is refused", storage("size = \"1G\""),
            Expect::InvalidAt("storage.size", "`persistent = true` is missing", 12, 1)),
        case("storage size with persistent = false is refused", storage("persistent = false\nsize = \"1G\""),
            Expect::Invalid(&[("storage.size", "`persistent = true` is missing")])),
        case("storage size over 4G is refused", storage("persistent = true\nsize = \"5G\""),
            Expect::Invalid(&[("storage.size", "storage.size is `5G`; an app keeps at most 4G")])),
        case("storage size must be megabytes or gigabytes", storage("persistent = true\nsize = \"1.5G\""),
            Expect::Invalid(&[("storage.size", "must be a number of megabytes or gigabytes")])),
        case("storage size must be a string", storage("persistent = true\nsize = 1073741824"),
            Expect::InvalidAt("storage.size", "must be a string, found an integer", 13, 8)),
        case("storage persistent must be a boolean", storage("persistent = \"yes\""),
            Expect::InvalidAt("storage.persistent", "must be a boolean (true or false), found a string", 12, 14)),
        case("unknown key in [storage] is refused", storage("persistent = true\nquota = \"1G\""),
            Expect::Invalid(&[("storage.quota", "unknown key `quota` in [storage]")])),
        case("storage must be a table", top("storage = true"), Expect::Invalid(&[("storage", "must be a table")])),
        case("every problem of a file is reported in one run",
            "name = 1\nproject = \"\"\nresource = \"free\"\n[code]\nlocation = \"nope\"\ndocker = \"ghcr.io/A/b:1\"\npython_application = \"x\"\nhealthcheck_endpoint = \"h\"\n",
            Expect::Invalid(&[("name", "must be a string"), ("project", "must not be empty"), ("code.location", "does not exist"),
                ("code.docker", "lowercase"), ("code.python_application", "module:variable"), ("code.healthcheck_endpoint", "start with `/`")])),
    ]
}

fn run(case: &Case) -> Report {
    let mut fs = MemoryFs::new();
    for (path, content) in &case.files {
        fs = fs.file(path, content.clone());
    }
    let options = Options {
        now: now(),
        untrusted_ssl: case.untrusted_ssl,
    };
    validate(Path::new(CONFIG), &case.toml, &fs, &options)
}

fn check(case: &Case) -> Result<(), String> {
    let report = run(case);
    let errors: Vec<_> = report.errors().collect();
    let warnings: Vec<_> = report.warnings().collect();
    let describe = || format!("errors: {errors:#?}\nwarnings: {warnings:#?}");
    match &case.expect {
        Expect::Valid(holds) => {
            let config = report
                .config
                .as_ref()
                .ok_or_else(|| format!("rejected\n{}", describe()))?;
            if !warnings.is_empty() {
                return Err(format!("unexpected warnings\n{}", describe()));
            }
            if !holds(config) {
                return Err(format!(
                    "accepted, but the configuration is wrong: {config:#?}"
                ));
            }
        }
        Expect::Warning(key, fragment, holds) => {
            let config = report
                .config
                .as_ref()
                .ok_or_else(|| format!("rejected\n{}", describe()))?;
            if !warnings
                .iter()
                .any(|w| w.key == *key && w.message.contains(fragment))
            {
                return Err(format!("no warning {key}: {fragment}\n{}", describe()));
            }
            if !holds(config) {
                return Err(format!(
                    "accepted, but the configuration is wrong: {config:#?}"
                ));
            }
        }
        Expect::Invalid(expected) => {
            if report.config.is_some() {
                return Err("accepted".into());
            }
            for (key, fragment) in expected.iter() {
                if !errors
                    .iter()
                    .any(|e| e.key == *key && e.message.contains(fragment))
                {
                    return Err(format!("no error {key}: {fragment}\n{}", describe()));
                }
            }
        }
        Expect::InvalidAt(key, fragment, line, column) => {
            if report.config.is_some() {
                return Err("accepted".into());
            }
            if !errors.iter().any(|e| {
                e.key == *key
                    && e.message.contains(fragment)
                    && e.line == Some(*line)
                    && e.column == Some(*column)
            }) {
                return Err(format!(
                    "no error {key}: {fragment} at {line}:{column}\n{}",
                    describe()
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn conformance_suite_accepts_every_valid_file_and_rejects_every_invalid_one() {
    let cases = cases();
    assert!(
        cases.len() >= 50,
        "the suite has only {} cases",
        cases.len()
    );
    let mut names = std::collections::HashSet::new();
    let failures: Vec<String> = cases
        .iter()
        .inspect(|c| assert!(names.insert(c.name), "duplicate case name {:?}", c.name))
        .filter_map(|c| check(c).err().map(|why| format!("✗ {}: {why}", c.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn errors_never_quote_secret_file_content() {
    let case = case(
        "secret",
        replace(
            "healthcheck_endpoint = \"/\"",
            "healthcheck_endpoint = \"/\"\nsecrets = \"s.json\"",
        ),
        Expect::Invalid(&[]),
    )
    .file("/proj/s.json", "{\"API_KEY\": \"hunter2\",,}");
    let report = run(&case);
    assert!(!report.is_valid());
    for d in &report.diagnostics {
        assert!(!format!("{d:?}").contains("hunter2"), "{d:?}");
    }
}

#[test]
fn errors_never_quote_private_key_material() {
    let f = fixtures();
    let case = case(
        "key",
        with_ssl_section(paid(""), "app.example.com"),
        Expect::Invalid(&[]),
    )
    .with_ssl(&f.mismatched);
    let report = run(&case);
    let key_body: String = f.mismatched.key.lines().nth(1).unwrap().to_string();
    for d in &report.diagnostics {
        assert!(!format!("{d:?}").contains(&key_body));
    }
}

fn load_error(content: Vec<u8>) -> String {
    let fs = MemoryFs::new().file(CONFIG, content);
    let options = Options {
        now: now(),
        untrusted_ssl: false,
    };
    let report = mse_config::load(Path::new(CONFIG), &fs, &options);
    assert!(!report.is_valid());
    let message = report.errors().next().unwrap().message.clone();
    message
}

#[test]
fn load_refuses_a_file_that_is_not_utf8() {
    let error = load_error(vec![b'n', 0xff, 0xfe]);
    assert!(error.contains("not UTF-8"), "{error}");
}

#[test]
fn load_refuses_an_oversized_file() {
    let error = load_error(vec![b'#'; 2 * 1024 * 1024]);
    assert!(error.contains("larger than"), "{error}");
}

#[test]
fn a_misspelt_storage_key_is_refused_with_the_right_one_suggested() {
    let case = case(
        "storage typo",
        storage("persistant = true"),
        Expect::Invalid(&[]),
    );
    let report = run(&case);
    let error = report.errors().next().unwrap();
    assert_eq!(error.key, "storage.persistant");
    assert_eq!(error.help.as_deref(), Some("did you mean `persistent`?"));
}

#[test]
fn diagnostics_come_in_file_order() {
    let text = "name = 1\nproject = 2\nresource = 3\n[code]\nlocation = 4\n";
    let report = validate(
        Path::new(CONFIG),
        text,
        &MemoryFs::new(),
        &Options {
            now: now(),
            untrusted_ssl: false,
        },
    );
    let lines: Vec<_> = report.diagnostics.iter().filter_map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert!(lines.len() >= 4);
}
