//! The tracker's HTTP response parser (`ResponseParser`): never panics, gives the same
//! outcome however the response is cut into reads, sticks to its outcome once it has one,
//! and never returns a body larger than its limit.
//!
//! Input: `[max_body selector] [split header, see the crate docs] [response bytes]`; then
//! the connection closes (`finish`).

use tessera_core::tracker::http::{HttpError, HttpResponse, ResponseParser};
use super::split::{chunks, take_splits};

const MAX_BODIES: [usize; 6] = [0, 1, 16, 1000, 64 << 10, 2 << 20];

/// What `feed` returned for the last chunk that gave an outcome (or the last one), then
/// what `finish` returned.
type Outcome = (
    Result<Option<HttpResponse>, HttpError>,
    Result<HttpResponse, HttpError>,
);

fn parse(max_body: usize, pieces: &[&[u8]]) -> Outcome {
    let mut parser = ResponseParser::new(max_body);
    let mut last: Result<Option<HttpResponse>, HttpError> = Ok(None);
    for piece in pieces {
        let r = parser.feed(piece);
        if let Ok(None) = last {
            last = r;
        } else {
            assert_eq!(r, last, "outcome changed after it was final");
        }
    }
    let finished = parser.finish();
    match &last {
        Ok(Some(response)) => assert_eq!(finished.as_ref(), Ok(response)),
        Err(e) => assert_eq!(finished.as_ref(), Err(e)),
        Ok(None) => {}
    }
    // `finish` is final too.
    assert_eq!(parser.finish(), finished);
    if let Ok(response) = &finished {
        assert!(response.body.len() <= max_body, "body over the limit");
    }
    (last, finished)
}

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let max_body = MAX_BODIES[usize::from(selector) % MAX_BODIES.len()];
    let (lens, stream) = take_splits(rest);
    let whole = parse(max_body, &[stream]);
    let split = parse(max_body, &chunks(stream, &lens));
    assert_eq!(whole, split, "outcome depends on how the response was cut");
}
