//! The server name a TLS connection asks for, read from its first bytes:
//! a pure parser of the ClientHello (RFC 8446 §5.1, §4.1.2; RFC 6066 §3)
//! over the bytes received so far, for a proxy that routes by SNI without
//! decrypting anything. No I/O, no allocation beyond the name; fuzzed.
//!
//! ```
//! use mse_sni::{parse_client_hello, Hello};
//!
//! // Too few bytes to tell: read more and ask again.
//! assert_eq!(parse_client_hello(&[22, 3, 1]), Ok(Hello::NeedMore));
//! // Not TLS at all (a plain HTTP request): refused at once.
//! assert!(parse_client_hello(b"GET / HTTP/1.1\r\n").is_err());
//! ```

/// The most bytes the proxy buffers while waiting for a complete ClientHello
/// (record headers included). Real hellos, post-quantum key shares included,
/// are a few kilobytes.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// TLS `ContentType.handshake`.
const CONTENT_HANDSHAKE: u8 = 22;
/// TLS `ContentType.alert`.
/// TLS `HandshakeType.client_hello`.
const CLIENT_HELLO: u8 = 1;
/// TLS `ExtensionType.server_name`.
const EXT_SERVER_NAME: u16 = 0;
/// TLS `NameType.host_name`.
const HOST_NAME: u8 = 0;
/// The largest plaintext record fragment (2^14).
const MAX_FRAGMENT: usize = 1 << 14;
/// A record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// A handshake header: type, 24-bit length.
const HANDSHAKE_HEADER: usize = 4;

/// What [`parse_client_hello`] made of the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// The bytes are a valid beginning of a ClientHello; read more.
    NeedMore,
    /// A complete ClientHello.
    Complete {
        /// Its `server_name` host name, lowercased; `None` when it has none.
        server_name: Option<String>,
    },
}

/// Why bytes are not the beginning of a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The first byte is not a TLS handshake record (plain HTTP, SSLv2, …).
    #[error("not a TLS handshake record (first byte {0:#04x})")]
    NotTls(u8),
    /// A record of another type arrived before the ClientHello was complete.
    #[error("a record of type {0} interrupts the ClientHello")]
    UnexpectedRecord(u8),
    /// The record's major version is not 3 (TLS 1.x).
    #[error("record version {0}.x is not TLS")]
    RecordVersion(u8),
    /// A handshake record is empty or longer than 2^14 bytes.
    #[error("a handshake record of {0} bytes (must be 1 to 16384)")]
    RecordLength(usize),
    /// The first handshake message is not a ClientHello.
    #[error("the first handshake message has type {0}, not ClientHello (1)")]
    NotClientHello(u8),
    /// The ClientHello does not fit in [`MAX_HELLO_BYTES`].
    #[error("the ClientHello does not fit in {MAX_HELLO_BYTES} bytes")]
    TooLarge,
    /// A field of the ClientHello is malformed; names the field.
    #[error("malformed ClientHello: bad {0}")]
    Malformed(&'static str),
    /// The `server_name` extension holds something that is not a DNS host name.
    #[error("the server name is not a DNS host name")]
    ServerName,
}

/// Parses the first bytes a client sent: [`Hello::NeedMore`] until they hold
/// a complete ClientHello (which may span several records, and any number of
/// reads), then its server name. Never panics; refuses anything that cannot
/// be a ClientHello as soon as it can tell, and any hello that needs more than
/// [`MAX_HELLO_BYTES`] of input. Bytes after the ClientHello are ignored.
pub fn parse_client_hello(buf: &[u8]) -> Result<Hello, HelloError> {
    let need_more = || {
        if buf.len() >= MAX_HELLO_BYTES {
            Err(HelloError::TooLarge)
        } else {
            Ok(Hello::NeedMore)
        }
    };
    // The handshake bytes gathered from the records so far, and the length of
    // the whole ClientHello message once its header is known.
    let mut message: Vec<u8> = Vec::new();
    let mut total: Option<usize> = None;
    let mut rest = buf;
    loop {
        if let Some(&kind) = rest.first() {
            if kind != CONTENT_HANDSHAKE {
                return Err(if message.is_empty() {
                    HelloError::NotTls(kind)
                } else {
                    HelloError::UnexpectedRecord(kind)
                });
            }
        }
        if let Some(&major) = rest.get(1) {
            if major != 3 {
                return Err(HelloError::RecordVersion(major));
            }
        }
        let Some(header) = rest.get(..RECORD_HEADER) else {
            return need_more();
        };
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length == 0 || length > MAX_FRAGMENT {
            return Err(HelloError::RecordLength(length));
        }
        let body = &rest[RECORD_HEADER..];
        let fragment = &body[..body.len().min(length)];
        message.extend_from_slice(fragment);

        if let Some(&kind) = message.first() {
            if kind != CLIENT_HELLO {
                return Err(HelloError::NotClientHello(kind));
            }
        }
        if total.is_none() && message.len() >= HANDSHAKE_HEADER {
            let length = (usize::from(message[1]) << 16)
                | (usize::from(message[2]) << 8)
                | usize::from(message[3]);
            // At least one record header comes with it.
            if HANDSHAKE_HEADER + length + RECORD_HEADER > MAX_HELLO_BYTES {
                return Err(HelloError::TooLarge);
            }
            total = Some(HANDSHAKE_HEADER + length);
        }
        if let Some(total) = total {
            if message.len() >= total {
                let server_name = client_hello_server_name(&message[HANDSHAKE_HEADER..total])?;
                return Ok(Hello::Complete { server_name });
            }
        }
        if fragment.len() < length {
            return need_more();
        }
        rest = &body[length..];
    }
}

/// A cursor over a ClientHello body; every read names the field it is for.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], HelloError> {
        if n > self.0.len() {
            return Err(HelloError::Malformed(field));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// An opaque vector with a one-byte length.
    fn vec8(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(field)?;
        self.take(usize::from(n), field)
    }

    /// An opaque vector with a two-byte length.
    fn vec16(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The server name of a complete ClientHello body (after the handshake header).
fn client_hello_server_name(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(body);
    let version = r.u16("legacy_version")?;
    if version >> 8 != 3 {
        return Err(HelloError::Malformed("legacy_version"));
    }
    r.take(32, "random")?;
    if r.vec8("legacy_session_id")?.len() > 32 {
        return Err(HelloError::Malformed("legacy_session_id"));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("cipher_suites"));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(HelloError::Malformed("legacy_compression_methods"));
    }
    // A TLS 1.2 hello may end here, with no extensions at all.
    if r.is_empty() {
        return Ok(None);
    }
    let mut extensions = Reader(r.vec16("extensions")?);
    if !r.is_empty() {
        return Err(HelloError::Malformed("extensions (bytes after them)"));
    }
    let mut server_name = None;
    let mut seen = false;
    while !extensions.is_empty() {
        let kind = extensions.u16("extension type")?;
        let data = extensions.vec16("extension data")?;
        if kind == EXT_SERVER_NAME {
            if seen {
                return Err(HelloError::Malformed("server_name (sent twice)"));
            }
            seen = true;
            server_name = Some(host_name(data)?);
        }
    }
    Ok(server_name)
}

/// The host name of a `server_name` extension (RFC 6066 §3): a non-empty
/// list holding one `host_name` entry.
fn host_name(data: &[u8]) -> Result<String, HelloError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("server_name list")?);
    if !r.is_empty() || list.is_empty() {
        return Err(HelloError::Malformed("server_name list"));
    }
    let mut name = None;
    while !list.is_empty() {
        let kind = list.u8("server_name type")?;
        let value = list.vec16("server_name host name")?;
        if kind != HOST_NAME || name.is_some() {
            return Err(HelloError::Malformed("server_name type"));
        }
        name = Some(value);
    }
    let name = name.ok_or(HelloError::Malformed("server_name list"))?;
    if !is_dns_name(name) {
        return Err(HelloError::ServerName);
    }
    // `is_dns_name` admits ASCII only, so this is lossless.
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// An ASCII DNS name without a trailing dot: labels of 1 to 63 letters,
/// digits, `-` or `_`, 253 bytes at most.
fn is_dns_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
