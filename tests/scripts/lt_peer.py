#!/usr/bin/python3
"""A libtorrent peer for Tessera's end-to-end tests and benchmarks.

Run with Debian's /usr/bin/python3 (python3-libtorrent). One torrent, loopback only:
DHT, LSD, UPnP, NAT-PMP and uTP are off (with --utp-only: TCP is off and uTP on, both ways;
with --utp: uTP is on besides TCP, libtorrent dialling uTP first);
several peers per IP are allowed.

    lt_peer.py seed  --torrent T --dir DATA --port P [--peer HOST:PORT]... [--upload-limit BPS]
    lt_peer.py leech --torrent T --dir OUT  --port P [--peer HOST:PORT]... [--keep-seeding]
                     [--download-limit BPS]
    both: [--encryption enabled|forced|disabled]   protocol encryption (MSE/PE) both ways;
          `forced` takes only encrypted connections with RC4 for the whole stream,
          `disabled` only plaintext ones; `enabled` (libtorrent's default) takes both
    (either mode) [--utp-only | --utp]

Lines on stdout (the harness waits for them):
    LISTENING <port>        the listen socket is bound
    SEEDING                 seed: the data checked complete, announcing and serving
    METADATA <seconds>      leech of a magnet link: the metadata is in
    DONE <seconds> <bytes>  leech: every piece downloaded and verified (exits 0 unless --keep-seeding)
Commands on stdin, one a line:
    upload-limit <bytes/s>  0 lifts the limit; answers "OK upload-limit <bytes/s>"
    download-limit <bytes/s> the same for downloads; answers "OK download-limit <bytes/s>"
    pause                   stop the torrent: disconnects its peers and announces `stopped`
                            to the tracker; answers "OK pause" once libtorrent reports it paused
    stats                   answers "STATS uploaded=<payload bytes> downloaded=<payload bytes> peers=<n>"
    utp-stats               answers "UTPSTATS <name>=<value>..." with the session's uTP counters
                            (libtorrent's utp.* metrics without the prefix: packets_out,
                            packet_resend, packet_loss, fast_retransmit, timeout, ...)
    quit
The script exits when stdin reaches end of file (its parent died or closed it), on `quit`,
after --timeout seconds (exit 3), or on a torrent error (exit 2, reason on stderr).
"""
import argparse
import os
import queue
import sys
import threading
import time

import libtorrent as lt


def log(*words):
    print(*words, flush=True)


def die(code, *words):
    print("lt_peer:", *words, file=sys.stderr, flush=True)
    os._exit(code)


def flush_and_exit(ses, handle):
    """Exit 0 once every block is written: libtorrent reports a piece verified (and the
    torrent seeding) before its disk threads have written all of it."""
    handle.flush_cache()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ses.wait_for_alert(100)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.cache_flushed_alert):
                os._exit(0)
            if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                die(2, "torrent error:", alert.message())
    die(3, "the disk cache was not flushed within 60 s")


def read_commands(commands):
    for line in sys.stdin:
        commands.put(line.strip())
    commands.put("eof")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "leech"])
    ap.add_argument("--torrent", required=True,
                    help="a .torrent file, or (leech) a magnet link whose metadata comes from peers")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("--download-limit", type=int, default=0)
    ap.add_argument("--seed-mode", action="store_true",
                    help="seed without checking the data first (libtorrent checks lazily)")
    ap.add_argument("--keep-seeding", action="store_true")
    ap.add_argument("--encryption", choices=["enabled", "forced", "disabled"], default="enabled")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--no-stdin", action="store_true",
                    help="take no commands and ignore end of file on stdin")
    ap.add_argument("--utp-only", action="store_true",
                    help="peer connections over uTP only (TCP off both ways)")
    ap.add_argument("--utp", action="store_true",
                    help="uTP on both ways besides TCP (libtorrent's defaults: dial uTP first)")
    args = ap.parse_args()

    settings = {
        "listen_interfaces": "127.0.0.1:%d" % args.port,
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "min_reconnect_time": 1,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        # Peers on 127.0.0.1 belong to the "local" peer class, which libtorrent never
        # rate-limits; per-torrent limits below still apply.
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.storage_notification,
        "user_agent": "tessera-e2e-libtorrent/" + lt.__version__,
    }
    if args.encryption == "forced":
        settings["in_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["out_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["allowed_enc_level"] = int(lt.enc_level.pe_rc4)
        settings["prefer_rc4"] = True
    elif args.encryption == "disabled":
        settings["in_enc_policy"] = int(lt.enc_policy.pe_disabled)
        settings["out_enc_policy"] = int(lt.enc_policy.pe_disabled)
    if args.utp:
        settings.update({
            "enable_incoming_utp": True,
            "enable_outgoing_utp": True,
        })
    if args.utp_only:
        settings.update({
            "enable_incoming_utp": True,
            "enable_outgoing_utp": True,
            "enable_incoming_tcp": False,
            "enable_outgoing_tcp": False,
        })
    ses = lt.session(settings)

    deadline = time.monotonic() + 10
    while ses.listen_port() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if ses.listen_port() == 0:
        die(2, "no listen socket on 127.0.0.1:%d" % args.port)
    log("LISTENING", ses.listen_port())

    if args.torrent.startswith("magnet:"):
        params = lt.parse_magnet_uri(args.torrent)
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.dir
    if args.mode == "seed" and args.seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    handle = ses.add_torrent(params)
    if args.upload_limit > 0:
        handle.set_upload_limit(args.upload_limit)
    if args.download_limit > 0:
        handle.set_download_limit(args.download_limit)
    total = params.ti.total_size() if params.ti is not None else None

    commands = queue.Queue()
    if not args.no_stdin:
        threading.Thread(target=read_commands, args=(commands,), daemon=True).start()

    start = time.monotonic()
    end = start + args.timeout
    peers_added = False
    announced_state = None
    checked_at = None
    pausing = False
    while True:
        now = time.monotonic()
        if now > end:
            die(3, "timeout after %.0f s" % args.timeout)
        while not commands.empty():
            cmd = commands.get().split()
            if not cmd:
                continue
            if cmd[0] in ("quit", "eof"):
                os._exit(0)
            elif cmd[0] == "upload-limit" and len(cmd) == 2:
                handle.set_upload_limit(int(cmd[1]))
                log("OK", " ".join(cmd))
            elif cmd[0] == "download-limit" and len(cmd) == 2:
                handle.set_download_limit(int(cmd[1]))
                log("OK", " ".join(cmd))
            elif cmd[0] == "connect" and len(cmd) == 2:
                host, port = cmd[1].rsplit(":", 1)
                handle.connect_peer((host, int(port)))
                log("OK", " ".join(cmd))
            elif cmd[0] == "pause":
                handle.pause()
                pausing = True
            elif cmd[0] == "utp-stats":
                ses.post_session_stats()
            elif cmd[0] == "stats":
                st = handle.status()
                log("STATS uploaded=%d downloaded=%d peers=%d"
                    % (st.total_payload_upload, st.total_payload_download, st.num_peers))
            else:
                print("lt_peer: unknown command", cmd, file=sys.stderr, flush=True)

        ses.wait_for_alert(100)
        for alert in ses.pop_alerts():
            if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                die(2, "torrent error:", alert.message())
            if isinstance(alert, lt.session_stats_alert):
                log("UTPSTATS", " ".join(
                    "%s=%d" % (name[len("utp.utp_"):] if name.startswith("utp.utp_") else name[4:], value)
                    for name, value in sorted(alert.values.items()) if name.startswith("utp.")))
            if pausing and isinstance(alert, lt.torrent_paused_alert):
                pausing = False
                log("OK pause")

        st = handle.status()
        if st.errc.value() != 0:
            die(2, "torrent error:", st.errc.message())
        checking = st.state in (lt.torrent_status.checking_files,
                                lt.torrent_status.checking_resume_data)
        if not peers_added and not checking:
            for peer in args.peer:
                host, port = peer.rsplit(":", 1)
                handle.connect_peer((host, int(port)))
            peers_added = True
        if not checking and checked_at is None:
            checked_at = now
        if args.mode == "seed":
            if st.is_seeding and announced_state is None:
                announced_state = "seeding"
                log("SEEDING")
            elif announced_state is None and checked_at is not None and now - checked_at > 5:
                die(2, "data incomplete after checking: %d of %d pieces in %s"
                    % (st.num_pieces, handle.torrent_file().num_pieces(), args.dir))
        if total is None and st.has_metadata:
            total = handle.torrent_file().total_size()
            log("METADATA", "%.3f" % (time.monotonic() - start))
        if args.mode == "seed":
            pass
        elif st.is_seeding and announced_state is None:
            announced_state = "done"
            log("DONE", "%.3f" % (time.monotonic() - start), total)
            if not args.keep_seeding:
                flush_and_exit(ses, handle)


if __name__ == "__main__":
    main()
