//! The client side of HTTP/1.1 as bytes, for tracker announces: build a GET request, and
//! parse a response fed in pieces (Content-Length, chunked, or delimited by the server
//! closing the connection) with `httparse`. Everything bounded.
//!
//! Decisions worth knowing:
//! - Interim `1xx` responses (`100 Continue`, `103 Early Hints`, ...) are skipped and the
//!   final response after them is returned; their heads count against [`MAX_HEAD`]. A
//!   `101 Switching Protocols` is an error: we never ask for an upgrade.
//! - Non-2xx statuses are complete responses like any other; the caller decides.
//! - Only the `chunked` transfer coding is understood (`identity` is ignored); any other one
//!   (or a `Content-Encoding` other than `identity`, which we never accept) is `Malformed`.
//! - `204` and `304` have no body; without `Transfer-Encoding` or `Content-Length` the body
//!   runs until the server closes the connection ([`ResponseParser::finish`]).

use bytes::Bytes;
use thiserror::Error;
use url::{Host, Position, Url};

/// Largest response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// Longest chunk-size line (size, extensions, CRLF) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// Headers `httparse` can hold for one response head.
const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
/// Why an HTTP exchange with a tracker failed.
pub enum HttpError {
    /// A URL that is not a usable `http://` URL (the URL, and why).
    #[error("unsupported tracker URL {0:?}: {1}")]
    BadUrl(String, String),
    /// Not a well-formed HTTP response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// A body over the size limit.
    #[error("HTTP response larger than {0} bytes")]
    TooLarge(usize),
    /// The connection ended before the response was complete.
    #[error("connection closed before the HTTP response was complete")]
    Truncated,
}

/// A request ready to send: where to connect and the bytes to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Host name or IP address to connect to (IPv6 without brackets).
    pub host: String,
    /// The port to connect to.
    pub port: u16,
    /// The request's bytes.
    pub bytes: Bytes,
}

/// Parses `url` and checks that it is something [`get`] can fetch: an `http://` URL with a
/// host. The error is a human-readable reason.
pub(crate) fn parse_http_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
    match parsed.scheme() {
        "http" => {}
        "https" => return Err("https:// trackers need TLS, which is not supported".into()),
        "udp" => return Err("udp:// trackers (BEP 15) are not supported".into()),
        other => return Err(format!("scheme {other}:// is not supported, only http://")),
    }
    if parsed.host().is_none() {
        return Err("the URL has no host".into());
    }
    Ok(parsed)
}

/// Builds `GET <path?query> HTTP/1.1` for `url` (an `http://` URL whose query string is
/// already complete) with `Host`, `User-Agent`, `Accept-Encoding: identity` and
/// `Connection: close`.
///
/// The path and query are sent as the `url` crate serialises them, which keeps existing
/// `%XX` escapes byte for byte (it only escapes characters that may not appear raw, such as
/// spaces), so the percent-encoded binary values of
/// [`announce_url`](super::announce::announce_url) reach the tracker unchanged. A fragment
/// and any user name or password in the URL are not sent. Control characters and non-ASCII
/// characters in `user_agent` are dropped so the header cannot be split.
pub fn get(url: &str, user_agent: &str) -> Result<HttpRequest, HttpError> {
    let parsed = parse_http_url(url).map_err(|reason| HttpError::BadUrl(url.to_owned(), reason))?;
    let (host, host_header) = match parsed.host() {
        Some(Host::Domain(d)) => (d.to_owned(), d.to_owned()),
        Some(Host::Ipv4(a)) => (a.to_string(), a.to_string()),
        Some(Host::Ipv6(a)) => (a.to_string(), format!("[{a}]")),
        None => {
            return Err(HttpError::BadUrl(
                url.to_owned(),
                "the URL has no host".into(),
            ));
        }
    };
    // `port()` is `None` when the URL gives none or gives the default one.
    let (port, host_header) = match parsed.port() {
        Some(p) => (p, format!("{host_header}:{p}")),
        None => (80, host_header),
    };
    let target = &parsed[Position::BeforePath..Position::AfterQuery];
    let user_agent: String = user_agent
        .chars()
        .filter(|c| *c == ' ' || c.is_ascii_graphic())
        .collect();
    let request = format!(
        "GET {target} HTTP/1.1\r\n\
         Host: {host_header}\r\n\
         User-Agent: {user_agent}\r\n\
         Accept-Encoding: identity\r\n\
         Connection: close\r\n\
         \r\n"
    );
    Ok(HttpRequest {
        host,
        port,
        bytes: Bytes::from(request),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// An HTTP response, its body decoded from any chunked encoding.
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The body.
    pub body: Bytes,
}

/// Incremental response parser.
#[derive(Debug)]
pub struct ResponseParser {
    max_body: usize,
    state: State,
    /// The head being received (leading empty lines are not stored).
    head: Vec<u8>,
    /// Bytes consumed by heads so far, interim `1xx` ones included; at most [`MAX_HEAD`].
    head_seen: usize,
    /// Status line of the final response, once its head is parsed.
    status: u16,
    reason: String,
    body: Vec<u8>,
    /// A chunk-size line, the CRLF after chunk data, or a trailer line being received.
    line: Vec<u8>,
    /// Bytes of chunked trailers so far, at most [`MAX_HEAD`].
    trailer_seen: usize,
}

#[derive(Debug)]
enum State {
    Head,
    /// This many body bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// The body ends when the connection does.
    UntilClose,
    Done(HttpResponse),
    Failed(HttpError),
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many bytes of chunk data still to come.
    Data(u64),
    /// Reading the line break after chunk data.
    DataEnd,
    /// After the last (zero-size) chunk: trailer lines until an empty one.
    Trailers,
}

impl ResponseParser {
    /// A parser that refuses bodies longer than `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        ResponseParser {
            max_body,
            state: State::Head,
            head: Vec::new(),
            head_seen: 0,
            status: 0,
            reason: String::new(),
            body: Vec::new(),
            line: Vec::new(),
            trailer_seen: 0,
        }
    }

    /// Feeds bytes; `Ok(Some)` once the response is complete (bytes after it are ignored).
    /// After completion or an error, every further call gives the same result again.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<HttpResponse>, HttpError> {
        match self.run(data) {
            Ok(done) => Ok(done),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The server closed the connection: completes a response delimited by the close, or
    /// reports it truncated.
    pub fn finish(&mut self) -> Result<HttpResponse, HttpError> {
        match &self.state {
            State::Done(response) => Ok(response.clone()),
            State::Failed(e) => Err(e.clone()),
            State::UntilClose => Ok(self.complete()),
            State::Head | State::Length(_) | State::Chunked(_) => {
                self.state = State::Failed(HttpError::Truncated);
                Err(HttpError::Truncated)
            }
        }
    }

    fn run(&mut self, mut data: &[u8]) -> Result<Option<HttpResponse>, HttpError> {
        loop {
            match self.state {
                State::Done(ref response) => return Ok(Some(response.clone())),
                State::Failed(ref e) => return Err(e.clone()),
                _ if data.is_empty() => return Ok(None),
                State::Head => {
                    let used = self.feed_head(data)?;
                    data = &data[used..];
                }
                State::Length(remaining) => {
                    let take = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    let remaining = remaining - take as u64;
                    self.state = State::Length(remaining);
                    if remaining == 0 {
                        self.complete();
                    }
                }
                State::Chunked(chunk) => {
                    let used = self.feed_chunked(chunk, data)?;
                    data = &data[used..];
                }
                State::UntilClose => {
                    if self.body.len().saturating_add(data.len()) > self.max_body {
                        return Err(HttpError::TooLarge(self.max_body));
                    }
                    self.body.extend_from_slice(data);
                    data = &[];
                }
            }
        }
    }

    /// Moves to `Done` with the body received so far, and returns the response.
    fn complete(&mut self) -> HttpResponse {
        let response = HttpResponse {
            status: self.status,
            reason: std::mem::take(&mut self.reason),
            body: Bytes::from(std::mem::take(&mut self.body)),
        };
        self.state = State::Done(response.clone());
        response
    }

    /// Accumulates head bytes until an empty line ends the head, then parses it. Returns
    /// how many bytes of `data` belonged to the head(s).
    fn feed_head(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        for (i, &b) in data.iter().enumerate() {
            self.head_seen += 1;
            if self.head_seen > MAX_HEAD {
                return Err(HttpError::TooLarge(MAX_HEAD));
            }
            // Empty lines before a status line are ignored (RFC 9112 section 2.2).
            if self.head.is_empty() && (b == b'\r' || b == b'\n') {
                continue;
            }
            self.head.push(b);
            if b == b'\n' && (self.head.ends_with(b"\n\n") || self.head.ends_with(b"\n\r\n")) {
                self.parse_head()?;
                if !matches!(self.state, State::Head) {
                    return Ok(i + 1);
                }
            }
        }
        Ok(data.len())
    }

    /// Parses the complete head in `self.head` and chooses how the body is delimited.
    fn parse_head(&mut self) -> Result<(), HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.head) {
            Ok(httparse::Status::Complete(_)) => {}
            // Cannot happen after an empty line; waiting for more is the safe reading.
            Ok(httparse::Status::Partial) => return Ok(()),
            Err(e) => return Err(HttpError::Malformed(format!("bad response head: {e}"))),
        }
        let status = response.code.unwrap_or(0);
        match status {
            101 => {
                return Err(HttpError::Malformed(
                    "unexpected 101 Switching Protocols".into(),
                ));
            }
            100..=199 => {
                // Interim response: no body, the real one follows.
                self.head.clear();
                return Ok(());
            }
            _ => {}
        }
        let framing = framing(status, response.headers, self.max_body)?;
        self.status = status;
        self.reason = response.reason.unwrap_or("").to_owned();
        self.head = Vec::new();
        match framing {
            Framing::Length(0) => {
                self.complete();
            }
            Framing::Length(n) => self.state = State::Length(n),
            Framing::Chunked => self.state = State::Chunked(Chunk::Size),
            Framing::UntilClose => self.state = State::UntilClose,
        }
        Ok(())
    }

    /// Advances the chunked-body state machine over `data`; returns the bytes used.
    fn feed_chunked(&mut self, chunk: Chunk, data: &[u8]) -> Result<usize, HttpError> {
        match chunk {
            Chunk::Data(remaining) => {
                let take = data
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                self.body.extend_from_slice(&data[..take]);
                let remaining = remaining - take as u64;
                self.state = State::Chunked(if remaining == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(remaining)
                });
                Ok(take)
            }
            Chunk::Size | Chunk::DataEnd | Chunk::Trailers => {
                let (used, complete) = take_line(&mut self.line, data);
                if chunk_line_too_long(chunk, self.line.len(), &mut self.trailer_seen, used) {
                    return Err(match chunk {
                        Chunk::Trailers => HttpError::TooLarge(MAX_HEAD),
                        Chunk::DataEnd => {
                            HttpError::Malformed("chunk data not followed by a line break".into())
                        }
                        _ => HttpError::Malformed("chunk-size line too long".into()),
                    });
                }
                if complete {
                    let line = std::mem::take(&mut self.line);
                    self.on_chunk_line(chunk, &line)?;
                }
                Ok(used)
            }
        }
    }

    /// A whole line (with its line break) of the chunked framing has arrived.
    fn on_chunk_line(&mut self, chunk: Chunk, line: &[u8]) -> Result<(), HttpError> {
        let is_empty = line == b"\r\n" || line == b"\n";
        match chunk {
            Chunk::Size => match parse_chunk_size(line, self.max_body)? {
                0 => self.state = State::Chunked(Chunk::Trailers),
                size => {
                    if (self.body.len() as u64).saturating_add(size) > self.max_body as u64 {
                        return Err(HttpError::TooLarge(self.max_body));
                    }
                    self.state = State::Chunked(Chunk::Data(size));
                }
            },
            Chunk::DataEnd if is_empty => self.state = State::Chunked(Chunk::Size),
            Chunk::DataEnd => {
                return Err(HttpError::Malformed(
                    "chunk data not followed by a line break".into(),
                ));
            }
            // Trailer fields are ignored; an empty line ends the message.
            Chunk::Trailers if is_empty => {
                self.complete();
            }
            Chunk::Trailers | Chunk::Data(_) => {}
        }
        Ok(())
    }
}

/// Whether the line being received in `chunk` state is over its limit.
fn chunk_line_too_long(
    chunk: Chunk,
    line_len: usize,
    trailer_seen: &mut usize,
    used: usize,
) -> bool {
    match chunk {
        Chunk::Size => line_len > MAX_CHUNK_LINE,
        Chunk::DataEnd => line_len > 2,
        Chunk::Trailers => {
            *trailer_seen += used;
            *trailer_seen > MAX_HEAD
        }
        Chunk::Data(_) => false,
    }
}

/// Appends bytes of `data` to `line` up to and including the first `\n`. Returns the bytes
/// used and whether the line is complete.
fn take_line(line: &mut Vec<u8>, data: &[u8]) -> (usize, bool) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            line.extend_from_slice(&data[..=i]);
            (i + 1, true)
        }
        None => {
            line.extend_from_slice(data);
            (data.len(), false)
        }
    }
}

/// `1a;ext=1\r\n` → 26. Extensions are ignored; a size that does not fit in 64 bits is
/// necessarily larger than `max_body`.
fn parse_chunk_size(line: &[u8], max_body: usize) -> Result<u64, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::Malformed("chunk size is not hexadecimal".into()));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or(HttpError::TooLarge(max_body))?;
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(HttpError::Malformed(format!(
            "bad chunk-size line {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    Ok(size)
}

/// The comma-separated elements of every `name` header, trimmed.
fn header_values<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// How the body of a response is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads the framing from the headers (RFC 9112 section 6.3).
fn framing(
    status: u16,
    headers: &[httparse::Header<'_>],
    max_body: usize,
) -> Result<Framing, HttpError> {
    for coding in header_values(headers, "content-encoding") {
        if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
            return Err(HttpError::Malformed(format!(
                "unsupported content-encoding {:?}",
                String::from_utf8_lossy(coding)
            )));
        }
    }
    if status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }

    let codings: Vec<&[u8]> = header_values(headers, "transfer-encoding")
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
        .collect();
    match codings.as_slice() {
        [] => {}
        [c] if c.eq_ignore_ascii_case(b"chunked") => return Ok(Framing::Chunked),
        _ => {
            let all: Vec<String> = codings
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            return Err(HttpError::Malformed(format!(
                "unsupported transfer-encoding {}",
                all.join(", ")
            )));
        }
    }

    let mut length = None;
    for value in header_values(headers, "content-length") {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::Malformed(format!(
                "bad content-length {:?}",
                String::from_utf8_lossy(value)
            )));
        }
        // Only digits: failing to parse means it does not fit in 64 bits.
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HttpError::TooLarge(max_body))?;
        if length.is_some_and(|l| l != n) {
            return Err(HttpError::Malformed(
                "conflicting content-length headers".into(),
            ));
        }
        length = Some(n);
    }
    match length {
        Some(n) if n > max_body as u64 => Err(HttpError::TooLarge(max_body)),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::UntilClose),
    }
}

#[cfg(test)]
mod tests;
