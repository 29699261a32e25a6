//! Properties: any two byte streams cross any (bounded) pattern of loss, duplication and
//! reordering intact and in order, both ways, and the connection closes cleanly; the same
//! with sequence numbers starting just below the wrap.

use std::time::Duration;

use proptest::prelude::*;

use super::exchange;
use super::link::{LinkModel, Pair};
use crate::utp::{CloseReason, INITIAL_PACKET_SIZE, MAX_PACKET_SIZE, UtpConfig};

/// Retry limits high enough that a loss rate up to 20 % cannot plausibly kill the
/// connection (eleven losses in a row of the same packet).
fn patient(max_packet_size: usize) -> UtpConfig {
    UtpConfig {
        max_packet_size,
        syn_retries: 10,
        max_retransmits: 10,
        fin_retries: 10,
        ..UtpConfig::default()
    }
}

fn link() -> impl Strategy<Value = LinkModel> {
    (
        0.0..0.2f64,
        0.0..0.1f64,
        1u64..80,
        0u64..60,
        INITIAL_PACKET_SIZE..=MAX_PACKET_SIZE,
    )
        .prop_map(|(loss, duplicate, delay, jitter, mtu)| LinkModel {
            loss,
            duplicate,
            delay: Duration::from_millis(delay),
            jitter: Duration::from_millis(jitter),
            rate: None,
            mtu,
        })
}

fn check(
    link: LinkModel,
    seed: u64,
    da: &[u8],
    db: &[u8],
    chunks: &[usize],
    mtu: usize,
    isn: Option<(u16, u16)>,
) -> Result<(), TestCaseError> {
    let mut p = Pair::new(patient(mtu), patient(mtu), link, seed);
    if let Some((a, b)) = isn {
        p.a.forced_isn = Some(a);
        p.b.forced_isn = Some(b);
    }
    let o = exchange(&mut p, da, db, chunks, Duration::from_secs(3600));
    prop_assert!(
        o.got_b == da,
        "A→B: {} of {} bytes, differ",
        o.got_b.len(),
        da.len()
    );
    prop_assert!(
        o.got_a == db,
        "B→A: {} of {} bytes, differ",
        o.got_a.len(),
        db.len()
    );
    prop_assert_eq!(o.closed_a, None);
    prop_assert_eq!(o.closed_b, Some(CloseReason::Finished));
    prop_assert!(
        o.all_gone,
        "connections left: {} {}",
        p.a.connections(),
        p.b.connections()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn streams_arrive_intact_under_loss_duplication_and_reordering(
        link in link(),
        seed: u64,
        da in proptest::collection::vec(any::<u8>(), 1..60_000),
        db in proptest::collection::vec(any::<u8>(), 0..60_000),
        chunks in proptest::collection::vec(1usize..20_000, 1..8),
        mtu in prop_oneof![Just(MAX_PACKET_SIZE), 150usize..MAX_PACKET_SIZE],
    ) {
        check(link, seed, &da, &db, &chunks, mtu, None)?;
    }

    /// Small packets and initial sequence numbers just below 65535: both directions wrap
    /// within the transfer.
    #[test]
    fn sequence_numbers_wrap_mid_stream(
        link in link(),
        seed: u64,
        isn_a in 65_300u16..,
        isn_b in 65_300u16..,
        len_a in 1usize..40_000,
        len_b in 0usize..40_000,
    ) {
        let da: Vec<u8> = (0..len_a).map(|i| (i * 7 + 1) as u8).collect();
        let db: Vec<u8> = (0..len_b).map(|i| (i * 13 + 5) as u8).collect();
        check(link, seed, &da, &db, &[3000], 150, Some((isn_a, isn_b)))?;
    }
}
