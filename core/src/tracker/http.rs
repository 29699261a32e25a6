//! The client side of HTTP/1.1 as bytes, for tracker announces: build a GET request, and
//! parse a response fed in pieces (Content-Length, chunked, or delimited by the server
//! closing the connection) with `httparse`. Everything bounded.
//!
//! SKELETON: signatures fixed, bodies to be written.

use bytes::Bytes;
use thiserror::Error;

/// Largest response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("unsupported tracker URL {0:?}: {1}")]
    BadUrl(String, String),
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    #[error("HTTP response larger than {0} bytes")]
    TooLarge(usize),
    #[error("connection closed before the HTTP response was complete")]
    Truncated,
}

/// A request ready to send: where to connect and the bytes to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub host: String,
    pub port: u16,
    pub bytes: Bytes,
}

/// Builds `GET <path?query> HTTP/1.1` for `url` (an `http://` URL whose query string is
/// already complete) with `Host`, `User-Agent`, `Accept-Encoding: identity` and
/// `Connection: close`.
pub fn get(url: &str, user_agent: &str) -> Result<HttpRequest, HttpError> {
    let _ = (url, user_agent);
    todo!()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub body: Bytes,
}

/// Incremental response parser.
#[derive(Debug)]
pub struct ResponseParser {}

impl ResponseParser {
    /// A parser that refuses bodies longer than `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        let _ = max_body;
        todo!()
    }

    /// Feeds bytes; `Ok(Some)` once the response is complete (bytes after it are ignored).
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<HttpResponse>, HttpError> {
        let _ = data;
        todo!()
    }

    /// The server closed the connection: completes a response delimited by the close, or
    /// reports it truncated.
    pub fn finish(&mut self) -> Result<HttpResponse, HttpError> {
        todo!()
    }
}
