"""Look after a gallery file from the command line: what it holds, and removing or renaming people.

Usage:
    python -m edge_facenet.manage people/gallery.sqlite3 info [--json]
    python -m edge_facenet.manage people/gallery.sqlite3 list [--json]
    python -m edge_facenet.manage people/gallery.sqlite3 remove "Ada Lovelace" [more names] [--no-vacuum]
    python -m edge_facenet.manage people/gallery.sqlite3 rename "Ada" "Ada Lovelace"

No model is needed: the file says which embedder filled it. ``remove`` deletes a person's embeddings from the file
and its write-ahead log (overwritten, not just unlinked) and then rewrites the file without the freed pages
(``VACUUM``), so nothing of them stays on disk that SQLite controls. A person enrolled from a folder comes back at
the next enrolment of that folder unless their photos leave it too.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path

from edge_facenet.gallery import Gallery
from edge_facenet.gallery_storage import read_identity


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        fingerprint, embedding_size = read_identity(args.gallery)
        gallery = Gallery(args.gallery, fingerprint, embedding_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1

    with gallery:
        if args.command == "info":
            info = {
                "path": str(args.gallery),
                "fingerprint": fingerprint,
                "embedding_size": embedding_size,
                "stored_dtype": gallery.stored_dtype,
                "people": len(gallery),
                "embeddings": gallery.count(),
                "file_bytes": args.gallery.stat().st_size,
                "mode": oct(stat.S_IMODE(os.stat(args.gallery).st_mode)),
            }
            _show(info, args.json, ": ")
            return 0
        if args.command == "list":
            _show({name: gallery.count(name) for name in gallery.names()}, args.json, "\t")
            return 0

        if args.command == "rename":
            try:
                gallery.rename(args.old, args.new)
            except ValueError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            print(f"renamed {args.old!r} to {args.new!r}")
            return 0

        # remove: every name is checked before anything is removed.
        missing = [name for name in args.names if name not in gallery]
        if missing:
            print(f"error: not in the gallery: {', '.join(map(repr, missing))}; nothing removed", file=sys.stderr)
            return 1
        for name in dict.fromkeys(args.names):
            count = gallery.remove(name)
            print(f"removed {name!r} ({count} embedding{'' if count == 1 else 's'})")
        if not args.no_vacuum:
            try:
                print(f"file rewritten without the freed pages: {gallery.vacuum()} bytes smaller")
            except ValueError as error:
                print(f"warning: {error}; the removed embeddings are overwritten all the same", file=sys.stderr)
    return 0


def _show(table: dict[str, object], as_json: bool, separator: str) -> None:
    if as_json:
        print(json.dumps(table))
        return
    for key, value in table.items():
        print(f"{key}{separator}{value}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_facenet.manage", description="Show a gallery file, or remove or rename people in it."
    )
    parser.add_argument("gallery", type=Path, help="the gallery file, e.g. people/gallery.sqlite3")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("info", "what the file holds"), ("list", "the people and their embeddings")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--json", action="store_true", help="one JSON object")
    remove = commands.add_parser("remove", help="delete people and their embeddings from the file")
    remove.add_argument("names", nargs="+")
    remove.add_argument("--no-vacuum", action="store_true", help="keep the file's size (skip the rewrite)")
    rename = commands.add_parser("rename", help="give a person another name")
    rename.add_argument("old")
    rename.add_argument("new")
    return parser


if __name__ == "__main__":
    sys.exit(main())
