#!/usr/bin/python3
"""A small DHT of libtorrent sessions on 127.0.0.1 for Tessera's DHT tests.

Run with Debian's /usr/bin/python3 (python3-libtorrent 2.0). Several sessions in one
process, each listening (TCP and UDP, DHT on the same port) on 127.0.0.1:<port>, with the
DHT on and its restrictions for loopback off (routing and search IP restrictions, node id
enforcement), no public bootstrap routers, LSD/UPnP/NAT-PMP off. The sessions are bootstrapped
from each other with add_dht_node. Its per-IP query limit and DHT upload limit are lifted,
since every node here shares one address.

    lt_dht.py --port P --port Q ... --dir DIR [--timeout SECONDS]

Session 0 seeds a small torrent it makes in DIR (the data in DIR/dht-seed.bin, the torrent,
without trackers, in DIR/dht-seed.torrent) and announces it to the DHT.

Lines on stdout (the harness waits for them):
    READY <info hash hex> <seeder port>     the sessions run, the torrent is seeding
Commands on stdin, one a line (session indices count from 0):
    announce                       session 0 announces its torrent to the DHT again;
                                   answers "OK announce"
    get_peers <i> <hex>            session i runs a DHT get_peers lookup; answers
                                   "PEERS <i> <hex> ip:port ..." when it ends
    live <i>                       session i's routing table; answers
                                   "LIVE <i> <node id hex>@ip:port ..."
    replies <i>                    DHT replies session i received that carried `values`;
                                   answers "REPLIES <i> port:count ..." (by sender's port)
    add_node <i> <port>            session i pings 127.0.0.1:<port>; answers "OK add_node"
    queries <port>                 DHT queries the sessions received from 127.0.0.1:<port>;
                                   answers "QUERIES <port> <query>:<count> ..."
    quit
The script exits when stdin reaches end of file, on `quit`, or after --timeout seconds (3).
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
    print("lt_dht:", *words, file=sys.stderr, flush=True)
    os._exit(code)


def session(port):
    return lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_dht": True,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_aggressive_lookups": True,
        # Every node here is 127.0.0.1: libtorrent's per-IP query limit (5/s, then a block
        # of 5 minutes) and its DHT upload limit would throttle them all as one.
        "dht_block_ratelimit": 100000,
        "dht_upload_rate_limit": 10000000,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.dht_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification
        | lt.alert.category_t.dht_log_notification
        | lt.alert.category_t.dht_operation_notification,
    })


def read_commands(commands):
    for line in sys.stdin:
        commands.put(line.strip())
    commands.put("eof")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout

    sessions = [session(p) for p in args.port]
    for i, s in enumerate(sessions):
        for j, p in enumerate(args.port):
            if i != j:
                s.add_dht_node(("127.0.0.1", p))

    # Session 0 seeds a small torrent.
    data = os.path.join(args.dir, "dht-seed.bin")
    with open(data, "wb") as f:
        f.write(bytes((i * 7 + 3) % 251 for i in range(256 * 1024)))
    fs = lt.file_storage()
    lt.add_files(fs, data)
    ct = lt.create_torrent(fs, 16 * 1024, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, args.dir)
    entry = ct.generate()
    with open(os.path.join(args.dir, "dht-seed.torrent"), "wb") as f:
        f.write(lt.bencode(entry))
    info = lt.torrent_info(entry)
    info_hash = str(info.info_hashes().v1)
    handle = sessions[0].add_torrent({"ti": info, "save_path": args.dir})

    # Per session: the node id, DHT replies with values by sender port, pending lookups.
    node_ids = [None] * len(sessions)
    replies = [dict() for _ in sessions]
    # DHT queries received by all sessions, by (sender port, query name).
    queries = dict()
    seeding = False

    commands = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()

    def pump():
        nonlocal seeding
        for i, s in enumerate(sessions):
            for a in s.pop_alerts():
                if isinstance(a, lt.torrent_finished_alert) or (
                        isinstance(a, lt.state_changed_alert) and a.state == lt.torrent_status.seeding):
                    if i == 0 and not seeding:
                        seeding = True
                        handle.force_dht_announce()
                        log("READY", info_hash, args.port[0])
                elif isinstance(a, lt.dht_stats_alert):
                    msg = a.message()
                    if "(" in msg:
                        node_ids[i] = msg.split("(")[1].split(")")[0]
                elif isinstance(a, lt.dht_pkt_alert):
                    # "<== [127.0.0.1:PORT] { ... }" for a packet received.
                    msg = a.message()
                    if msg.startswith("<== [") and "'y': 'r'" in msg and "'values'" in msg:
                        port = int(msg[5:msg.index("]")].rsplit(":", 1)[1])
                        replies[i][port] = replies[i].get(port, 0) + 1
                    elif msg.startswith("<== [") and "'y': 'q'" in msg and "'q': '" in msg:
                        port = int(msg[5:msg.index("]")].rsplit(":", 1)[1])
                        q = msg[msg.index("'q': '") + 6:].split("'", 1)[0]
                        queries[(port, q)] = queries.get((port, q), 0) + 1
                elif isinstance(a, lt.dht_get_peers_reply_alert):
                    peers = " ".join("%s:%d" % p for p in a.peers())
                    log("PEERS", i, str(a.info_hash), peers)
                elif isinstance(a, lt.dht_live_nodes_alert):
                    nodes = " ".join("%s@%s:%d" % (str(n[0]) if not isinstance(n, dict) else str(n["nid"]),
                                                    *(n[1] if not isinstance(n, dict) else n["endpoint"]))
                                     for n in a.nodes)
                    log("LIVE", i, nodes)
                elif isinstance(a, lt.torrent_error_alert):
                    die(2, "torrent error:", a.message())

    while True:
        if time.monotonic() > deadline:
            die(3, "timed out")
        for i, s in enumerate(sessions):
            if node_ids[i] is None:
                s.post_dht_stats()
        sessions[0].wait_for_alert(50)
        pump()
        try:
            line = commands.get(timeout=0.05)
        except queue.Empty:
            continue
        words = line.split()
        if not words:
            continue
        if words[0] in ("quit", "eof"):
            os._exit(0)
        elif words[0] == "announce":
            handle.force_dht_announce()
            log("OK announce")
        elif words[0] == "get_peers":
            i = int(words[1])
            sessions[i].dht_get_peers(lt.sha1_hash(bytes.fromhex(words[2])))
        elif words[0] == "live":
            i = int(words[1])
            if node_ids[i] is None:
                log("LIVE", i)
            else:
                sessions[i].dht_live_nodes(lt.sha1_hash(bytes.fromhex(node_ids[i])))
        elif words[0] == "replies":
            i = int(words[1])
            log("REPLIES", i, " ".join("%d:%d" % kv for kv in sorted(replies[i].items())))
        elif words[0] == "queries":
            port = int(words[1])
            log("QUERIES", port, " ".join("%s:%d" % (q, n) for (p, q), n in sorted(queries.items())
                                          if p == port))
        elif words[0] == "add_node":
            i = int(words[1])
            sessions[i].add_dht_node(("127.0.0.1", int(words[2])))
            log("OK add_node")
        else:
            die(2, "unknown command", line)


if __name__ == "__main__":
    main()
