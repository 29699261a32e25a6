#!/usr/bin/python3
"""Makes a torrent with libtorrent's create_torrent, for Tessera's end-to-end tests.

    lt_create.py --source DIR --piece-size BYTES --out FILE [--tracker URL] [--v1-padded]

Without --v1-padded: libtorrent 2.0's default, a hybrid v1+v2 torrent, whose v1 part has
BEP 47 padding files (`.pad/<n>`, attr "p") after every file that does not end on a
piece boundary. With --v1-padded: a v1-only torrent with the same padding
(canonical_files). Run with Debian's /usr/bin/python3 (python3-libtorrent).
"""
import argparse
import os

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--piece-size", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tracker")
    ap.add_argument("--v1-padded", action="store_true")
    args = ap.parse_args()
    source = os.path.abspath(args.source)
    fs = lt.file_storage()
    lt.add_files(fs, source)
    flags = 0
    if args.v1_padded:
        flags = lt.create_torrent.v1_only | lt.create_torrent.canonical_files
    ct = lt.create_torrent(fs, args.piece_size, flags=flags)
    if args.tracker:
        ct.add_tracker(args.tracker)
    lt.set_piece_hashes(ct, os.path.dirname(source))
    with open(args.out, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    print("CREATED", args.out)


if __name__ == "__main__":
    main()
