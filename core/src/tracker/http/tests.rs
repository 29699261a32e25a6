use super::*;
use proptest::prelude::*;

fn request_text(url: &str) -> (String, u16, String) {
    let req = get(url, "Tessera/0.1").unwrap();
    let text = String::from_utf8(req.bytes.to_vec()).unwrap();
    (req.host, req.port, text)
}

#[test]
fn request_for_plain_url() {
    let (host, port, text) = request_text("http://tracker.example/announce?a=1&b=%41");
    assert_eq!(host, "tracker.example");
    assert_eq!(port, 80);
    assert_eq!(
        text,
        "GET /announce?a=1&b=%41 HTTP/1.1\r\n\
         Host: tracker.example\r\n\
         User-Agent: Tessera/0.1\r\n\
         Accept-Encoding: identity\r\n\
         Connection: close\r\n\
         \r\n"
    );
}

#[test]
fn request_with_port_and_without_path() {
    let (host, port, text) = request_text("http://tracker.example:6969");
    assert_eq!((host.as_str(), port), ("tracker.example", 6969));
    assert!(text.starts_with("GET / HTTP/1.1\r\nHost: tracker.example:6969\r\n"));
    // An explicit default port is not repeated in the Host header.
    let (_, port, text) = request_text("http://tracker.example:80/a#frag");
    assert_eq!(port, 80);
    assert!(text.starts_with("GET /a HTTP/1.1\r\nHost: tracker.example\r\n"));
}

#[test]
fn request_for_ipv6_and_ipv4_literals() {
    let (host, port, text) = request_text("http://[2001:db8::1]:8080/announce");
    assert_eq!((host.as_str(), port), ("2001:db8::1", 8080));
    assert!(text.starts_with("GET /announce HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n"));
    let (host, port, text) = request_text("http://[::1]/x");
    assert_eq!((host.as_str(), port), ("::1", 80));
    assert!(text.contains("\r\nHost: [::1]\r\n"));
    let (host, _, text) = request_text("http://10.0.0.1:1234/x");
    assert_eq!(host, "10.0.0.1");
    assert!(text.contains("\r\nHost: 10.0.0.1:1234\r\n"));
}

#[test]
fn binary_query_is_sent_exactly_as_encoded() {
    use crate::id::{InfoHash, PeerId};
    use crate::tracker::announce::{AnnounceEvent, AnnounceParams, announce_url};
    let mut hash = [0x41u8; 20];
    hash[..8].copy_from_slice(&[0x00, 0x20, 0x25, 0x2B, 0xFF, 0x23, 0x3F, 0x27]);
    let params = AnnounceParams {
        info_hash: InfoHash(hash),
        peer_id: PeerId(*b"-TQ0100-%+ /?#&=\x00\xfe\x7f'"),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: AnnounceEvent::None,
        numwant: None,
        key: 1,
        tracker_id: None,
    };
    let url = announce_url("http://t.example/ann?passkey=x%2Fy", &params);
    let query = &url[url.find('?').unwrap()..];
    assert!(query.contains("info_hash=%00%20%25%2B%FF%23%3F%27AAAA"));
    let (_, _, text) = request_text(&url);
    let expected = format!("GET /ann{query} HTTP/1.1\r\n");
    assert!(text.starts_with(&expected), "{text}");
}

#[test]
fn user_agent_cannot_inject_headers() {
    let req = get("http://t/", "evil\r\nX-Injected: 1").unwrap();
    let text = String::from_utf8(req.bytes.to_vec()).unwrap();
    assert!(text.contains("\r\nUser-Agent: evilX-Injected: 1\r\n"));
}

#[test]
fn unsupported_urls_rejected_with_reason() {
    for (url, needle) in [
        ("https://t.example/announce", "TLS"),
        ("udp://t.example:6969", "udp"),
        ("wss://t.example", "wss"),
        ("not a url", "not a valid URL"),
        ("http://", "not a valid URL"),
    ] {
        match get(url, "ua") {
            Err(HttpError::BadUrl(u, reason)) => {
                assert_eq!(u, url);
                assert!(reason.contains(needle), "{url}: {reason}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

fn ok(status: u16, reason: &str, body: &[u8]) -> HttpResponse {
    HttpResponse {
        status,
        reason: reason.into(),
        body: Bytes::copy_from_slice(body),
    }
}

/// Feeds `input` whole, then byte by byte; both must agree. Returns the result, after
/// `finish` if the response was not complete.
fn parse_all(input: &[u8], max_body: usize) -> Result<HttpResponse, HttpError> {
    let whole = {
        let mut p = ResponseParser::new(max_body);
        match p.feed(input) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => p.finish(),
            Err(e) => Err(e),
        }
    };
    let bytewise = {
        let mut p = ResponseParser::new(max_body);
        let mut result = None;
        for b in input {
            match p.feed(std::slice::from_ref(b)) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    result = Some(Ok(r));
                    break;
                }
                Err(e) => {
                    result = Some(Err(e));
                    break;
                }
            }
        }
        result.unwrap_or_else(|| p.finish())
    };
    assert_eq!(whole, bytewise);
    whole
}

const LENGTH: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;name=value\r\nhello\r\n7 ; x\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n";
const CLOSE: &[u8] = b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nno such torrent";

#[test]
fn content_length_body() {
    assert_eq!(parse_all(LENGTH, 100), Ok(ok(200, "OK", b"hello")));
}

#[test]
fn chunked_body_with_extension_and_trailer() {
    assert_eq!(parse_all(CHUNKED, 100), Ok(ok(200, "OK", b"hello, world")));
}

#[test]
fn close_delimited_body_and_error_status() {
    assert_eq!(
        parse_all(CLOSE, 100),
        Ok(ok(404, "Not Found", b"no such torrent"))
    );
}

#[test]
fn bytes_after_the_response_are_ignored_and_result_repeats() {
    let mut p = ResponseParser::new(100);
    let input = [LENGTH, b"garbage after"].concat();
    let r = p.feed(&input).unwrap();
    assert_eq!(r, Some(ok(200, "OK", b"hello")));
    assert_eq!(p.feed(b"more").unwrap(), r);
    assert_eq!(p.finish().ok(), r);
}

#[test]
fn bare_newlines_and_leading_empty_lines_accepted() {
    let input = b"\r\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nhi";
    assert_eq!(parse_all(input, 100), Ok(ok(200, "OK", b"hi")));
}

#[test]
fn no_body_statuses_and_empty_length() {
    let input = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(parse_all(input, 100), Ok(ok(204, "No Content", b"")));
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(parse_all(input, 100), Ok(ok(200, "OK", b"")));
}

#[test]
fn interim_responses_are_skipped() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(parse_all(input, 100), Ok(ok(200, "OK", b"hi")));
    let input = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
    assert!(matches!(
        parse_all(input, 100),
        Err(HttpError::Malformed(_))
    ));
}

#[test]
fn head_too_large() {
    let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
    while input.len() <= MAX_HEAD {
        input.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    input.extend_from_slice(b"\r\n");
    assert_eq!(parse_all(&input, 100), Err(HttpError::TooLarge(MAX_HEAD)));
    // Endless empty lines or interim responses are bounded too.
    assert_eq!(
        parse_all(&[b'\n'; MAX_HEAD + 1], 100),
        Err(HttpError::TooLarge(MAX_HEAD))
    );
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_HEAD / 20);
    assert_eq!(parse_all(&interim, 100), Err(HttpError::TooLarge(MAX_HEAD)));
    // A head of exactly MAX_HEAD bytes is fine.
    let mut input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: ".to_vec();
    input.resize(MAX_HEAD - 4, b'a');
    input.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_all(&input, 100), Ok(ok(200, "OK", b"")));
}

#[test]
fn body_too_large() {
    // Declared too large: refused before any body byte arrives.
    let mut p = ResponseParser::new(4);
    assert_eq!(p.feed(LENGTH), Err(HttpError::TooLarge(4)));
    let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    assert_eq!(parse_all(huge, 4), Err(HttpError::TooLarge(4)));
    // Exactly the limit is fine.
    assert_eq!(parse_all(LENGTH, 5), Ok(ok(200, "OK", b"hello")));
    // Chunked: the total of the chunks counts; overflowing sizes are too large.
    assert_eq!(parse_all(CHUNKED, 11), Err(HttpError::TooLarge(11)));
    assert_eq!(parse_all(CHUNKED, 12), Ok(ok(200, "OK", b"hello, world")));
    let overflow = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n";
    assert_eq!(parse_all(overflow, 100), Err(HttpError::TooLarge(100)));
    let big_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\n";
    assert_eq!(parse_all(big_chunk, 100), Err(HttpError::TooLarge(100)));
    // Close-delimited: refused as soon as the limit is passed.
    let mut p = ResponseParser::new(10);
    assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n\r\n0123456789"), Ok(None));
    assert_eq!(p.feed(b"x"), Err(HttpError::TooLarge(10)));
    assert_eq!(p.finish(), Err(HttpError::TooLarge(10)));
}

#[test]
fn truncated_responses() {
    for cut in [0, 10, LENGTH.len() - 1] {
        assert_eq!(
            parse_all(&LENGTH[..cut], 100),
            Err(HttpError::Truncated),
            "{cut}"
        );
    }
    for cut in [CHUNKED.len() - 2, CHUNKED.len() - 20, 60] {
        assert_eq!(
            parse_all(&CHUNKED[..cut], 100),
            Err(HttpError::Truncated),
            "{cut}"
        );
    }
}

#[test]
fn malformed_responses() {
    for input in [
        &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nab\r\n",
    ] {
        let result = parse_all(input, 100);
        assert!(
            matches!(result, Err(HttpError::Malformed(_))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(input)
        );
    }
    let long_size = [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"[..],
        &[b'x'; MAX_CHUNK_LINE],
    ]
    .concat();
    assert!(matches!(
        parse_all(&long_size, 100),
        Err(HttpError::Malformed(_))
    ));
}

#[test]
fn identical_content_lengths_and_identity_codings_accepted() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\
        Transfer-Encoding: identity\r\nContent-Encoding: identity\r\n\r\nhi";
    assert_eq!(parse_all(input, 100), Ok(ok(200, "OK", b"hi")));
}

/// Feeds `input` cut at `cuts`, then finishes if needed.
fn parse_split(input: &[u8], cuts: &[prop::sample::Index]) -> Result<HttpResponse, HttpError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    let mut p = ResponseParser::new(1 << 16);
    for w in points.windows(2) {
        if let Some(r) = p.feed(&input[w[0]..w[1]])? {
            return Ok(r);
        }
    }
    p.finish()
}

proptest! {
    #[test]
    fn any_split_gives_the_same_response(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        for input in [LENGTH, CHUNKED, CLOSE] {
            let mut p = ResponseParser::new(1 << 16);
            let expected = match p.feed(input) {
                Ok(Some(r)) => r,
                _ => p.finish().unwrap(),
            };
            prop_assert_eq!(parse_split(input, &cuts), Ok(expected));
        }
    }

    #[test]
    fn garbage_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let _ = parse_split(&bytes, &cuts);
    }

    #[test]
    fn garbage_bodies_never_panic(
        prefix in 0usize..3,
        bytes in prop::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b';'), Just(b'0'), Just(b'f'), any::<u8>()],
            0..512,
        ),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let head: &[u8] = [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ][prefix];
        let input = [head, &bytes].concat();
        let result = parse_split(&input, &cuts);
        if let Ok(r) = result {
            prop_assert!(r.body.len() <= 1 << 16);
        }
    }
}
