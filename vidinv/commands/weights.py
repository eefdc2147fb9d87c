"""``vidinv weights``: list, fetch, import and verify the model zoo (configs/zoo.yaml)."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  vidinv weights list                      # name, published file name, kind, status, size, source, license
  vidinv weights list --notes              # also what to know about each file (conversion, no link, ...)
  vidinv weights fetch                     # download everything missing (resumable, verified)
  vidinv weights fetch fs_encoder_143 psp_ffhq_encode
  vidinv weights import /media/usb/weights # air-gapped: pick known files (by published name) out of a folder
  vidinv weights verify                    # recompute every checksum

The cache is $VIDINV_HOME (default ~/.cache/vidinv); VIDINV_OFFLINE=1 forbids downloads.
Several files carry NON-COMMERCIAL licenses: see the license column.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="list, fetch, import and verify model weights", description=__doc__,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ws = p.add_subparsers(dest="weights_cmd", metavar="ACTION")
    pl = ws.add_parser("list", help="table of zoo files and their status")
    pl.add_argument("--kind", help="only this kind (generator, fs_encoder, direction, ...)")
    pl.add_argument("--paths", action="store_true", help="show the cache path of each file")
    pl.add_argument("--links", action="store_true", help="show the download link of each file")
    pl.add_argument("--notes", action="store_true", help="show each file's note (conversion, no link, ...)")
    pf = ws.add_parser("fetch", help="download files (default: all missing)")
    pf.add_argument("names", nargs="*", metavar="NAME", help="zoo names (see `vidinv weights list`)")
    pf.add_argument("--force", action="store_true", help="download again even if present")
    pi = ws.add_parser("import", help="find known files in a folder tree (by name or checksum) and cache them")
    pi.add_argument("dir", help="a folder holding weight files under any sub-folders")
    pi.add_argument("--link", action="store_true", help="symlink instead of copying")
    pv = ws.add_parser("verify", help="recompute checksums of the cached files")
    pv.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=run, weights_cmd=None)


def run(args: argparse.Namespace) -> int:
    from vidinv import paths
    from vidinv.errors import VidinvError
    from vidinv.zoo import Zoo, format_size

    zoo = Zoo()
    cmd = args.weights_cmd or "list"
    quiet = bool(getattr(args, "quiet", False))
    if cmd == "list":
        rows = [r for r in zoo.rows() if not getattr(args, "kind", None) or r["kind"] == args.kind]
        extra = [c for c, flag in (("path", "paths"), ("link", "links"), ("note", "notes"))
                 if getattr(args, flag, False)]
        cols = ["name", "kind", "status", "file", "size", "source", "license"] + extra
        _print_table(cols, [[format_size(r[c]) if c == "size" else (r[c] or "-") for c in cols]
                            for r in rows])
        missing = sum(r["status"] == "missing" for r in rows)
        print(f"\ncache: {zoo.home}  ({missing} of {len(rows)} missing; `vidinv weights fetch` or "
              "`vidinv weights import DIR`)")
        return 0
    if cmd == "fetch":
        if paths.offline():
            raise VidinvError("VIDINV_OFFLINE=1 forbids downloads; unset it or use `vidinv weights import DIR`")
        names = args.names or [n for n, a in zoo.artifacts.items() if a.source.get("type") != "none"
                               and zoo.status(n) in ("missing", "corrupt")]
        if not names:
            print("nothing to fetch: every file is present")
            return 0
        failed = []
        for n in names:
            try:
                path = zoo.fetch([n], progress=not quiet, force=args.force)[zoo.get(n).name]
                print(f"OK    {zoo.get(n).name:24s} {path}")
            except VidinvError as exc:
                if len(names) == 1:
                    raise
                failed.append(n)
                print(f"FAIL  {n:24s} {exc}")
        if failed:
            raise VidinvError(f"{len(failed)} of {len(names)} downloads failed: {', '.join(failed)}")
        return 0
    if cmd == "import":
        found = zoo.import_dir(args.dir, link=args.link)
        for n, p in found.items():
            print(f"imported  {n:24s} {p}  [{zoo.status(n)}]")
        if not found:
            print(f"no known weight files (by name or checksum) under {args.dir}")
            return 1
        return 0
    if cmd == "verify":
        res = zoo.verify(args.names or None)
        for n, st in res.items():
            print(f"{st:9s} {n}")
        bad = [n for n, st in res.items() if st == "corrupt"]
        if bad:
            raise VidinvError(f"checksum mismatch: {', '.join(bad)}; fetch them again with "
                              f"`vidinv weights fetch --force {' '.join(bad)}`")
        return 0
    raise VidinvError(f"unknown weights action {cmd!r}")


def _print_table(cols: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in [c] + [r[i] for r in rows]) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
