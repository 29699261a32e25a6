//! A swarm mixing both runtimes: one seeder and three Tessera downloaders (two on mio, one
//! on smol) that find each other through opentracker and trade pieces among themselves.

use std::time::Duration;

use tessera_tests::data::{Compare, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::tessera::Tessera;
use tessera_tests::{Fixture, serial};

const TIMEOUT: Duration = Duration::from_secs(180);

/// The bytes a finished download says it uploaded, from its summary line
/// (`..., N peers, 12.5 MiB uploaded`).
fn uploaded(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(" uploaded"))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    let words: Vec<&str> = line
        .trim_end_matches(" uploaded")
        .rsplit(' ')
        .take(2)
        .collect();
    let (unit, number) = (words[0], words[1]);
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other:?} in {line:?}"),
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("number in {line:?}"))
        * scale
}

#[test]
fn mixed_runtimes_swarm_completes_and_downloaders_trade() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    // The seeder alone would need ~16 s for each copy: the downloaders must trade to finish.
    let throttled = LtOptions {
        upload_limit: 4 << 20,
        ..LtOptions::default()
    };
    let _seeder = LtPeer::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir, &throttled);
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, Duration::from_secs(30));

    let clients = [Tessera::mio(), Tessera::smol(), Tessera::mio()];
    let mut downloads = Vec::new();
    for (i, t) in clients.iter().enumerate() {
        let out = fx.new_dir(&format!("out-{i}-{}", t.name));
        downloads.push((
            t.name,
            out.clone(),
            t.download(&fx.logs(), &fx.torrent.path, &out, &[]),
        ));
    }
    let mut total_uploaded = 0.0;
    for (name, out, proc) in &mut downloads {
        proc.wait_success(TIMEOUT);
        compare_trees(&fx.seed_dir, out, Compare::tessera());
        let up = uploaded(&proc.stdout());
        eprintln!("{name} uploaded {up} bytes to the other downloaders");
        total_uploaded += up;
    }
    assert!(
        total_uploaded > 0.0,
        "the downloaders uploaded nothing to each other"
    );
}
