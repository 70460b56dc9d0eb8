//! The vendors' web services the emulated hardware needs (Intel's PCCS,
//! AMD's KDS), served on a free loopback port: one HTTP/1.1 GET a
//! connection, answered by a function of the request's path and query.

use std::io::{BufRead as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// An answer: its headers and body; `None` is 404.
pub type Answer = Option<(Vec<(&'static str, String)>, Vec<u8>)>;

/// A running service; stopped when dropped.
pub struct Service {
    url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    address: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Serves `answer(route, query)` on a free loopback port.
    pub fn start(
        answer: impl Fn(&str, &str) -> anyhow::Result<Answer> + Send + 'static,
    ) -> anyhow::Result<Service> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (stopping, counted) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(&answer, stream);
                }
            }
        });
        Ok(Service {
            url: format!("http://{address}"),
            stop,
            requests,
            address,
            thread: Some(thread),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests it answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread.
        let _ = std::net::TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request, then closes.
fn serve(
    answer: &impl Fn(&str, &str) -> anyhow::Result<Answer>,
    stream: std::net::TcpStream,
) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers, up to the empty line (bounded).
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let mut stream = reader.into_inner();
    match answer(route, query)? {
        Some((headers, body)) => {
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)?;
        }
        None => stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    Ok(())
}
