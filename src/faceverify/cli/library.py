"""``faceverify cluster`` (group a photo library by person) and ``faceverify people`` (look at
the groups and correct them: name, merge, split, move, reject; export; a contact sheet)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import EXIT_OK, EXIT_PARTIAL, log, open_library_from_args
from faceverify.errors import ConfigError

if TYPE_CHECKING:
    from faceverify.cluster.library import Library


def cluster(args: argparse.Namespace) -> int:
    """Scan PHOTOS into the library, group the faces, and write what was asked."""
    library = open_library_from_args(args, threshold=args.threshold)
    with library.gallery:
        scanned = library.scan(args.photos, progress=False if args.quiet else None)
        grouped = library.group(full=args.full)
        for path, reason in scanned.failed:
            log.warning("%s: %s", path, reason)
        if args.export:
            _write_private(Path(args.export), json.dumps(library.export(), indent=1))
        if args.sheet:
            from faceverify.cluster.sheet import write_contact_sheet

            write_contact_sheet(library, args.sheet)
        if args.json:
            print(json.dumps({"scan": scanned.to_dict(), "grouping": grouped.to_dict()}, indent=2))
        else:
            print(scanned.summary())
            print(grouped.summary())
    return EXIT_PARTIAL if scanned.failed else EXIT_OK


def people(args: argparse.Namespace) -> int:
    """``faceverify people ACTION``: list and correct the groups of a library."""
    library = open_library_from_args(args)
    with library.gallery:
        answer = _PEOPLE_ACTIONS[args.action](library, args)
    if answer is not None:
        print(json.dumps(answer, indent=2) if args.json or not isinstance(answer, str) else answer)
    return EXIT_OK


def _list(library: Library, args: argparse.Namespace) -> Any:
    groups = library.groups(sample=0)
    if args.json:
        return [g.to_dict() for g in groups]
    return "\n".join(f"{g.id}\t{g.faces}\t{g.name or '-'}" for g in groups) or None


def _faces(library: Library, args: argparse.Namespace) -> Any:
    faces = library.faces(args.group, ungrouped=args.group is None)
    if args.json:
        return [f.to_dict() for f in faces]
    return (
        "\n".join(
            f"{f.id}\t{f.group if f.group is not None else '-'}\t{f.quality:.2f}\t{f.photo}" for f in faces
        )
        or None
    )


def _name(library: Library, args: argparse.Namespace) -> Any:
    added = library.name(args.group, args.name)
    return (
        {"group": args.group, "name": args.name, "enrolled": added}
        if args.json
        else f"{args.group}\t{args.name}"
    )


def _merge(library: Library, args: argparse.Namespace) -> Any:
    kept = library.merge(args.target, args.others)
    return {"group": kept} if args.json else str(kept)


def _split(library: Library, args: argparse.Namespace) -> Any:
    new = library.split(args.group, args.faces)
    return {"group": args.group, "new_group": new} if args.json else str(new)


def _move(library: Library, args: argparse.Namespace) -> Any:
    target = None if args.to == "new" else _group_id(args.to)
    group = library.move(args.face, target)
    return {"face": args.face, "group": group} if args.json else str(group)


def _reject(library: Library, args: argparse.Namespace) -> Any:
    library.reject(args.face, args.group)
    return {"face": args.face, "not_group": args.group} if args.json else None


def _export(library: Library, args: argparse.Namespace) -> Any:
    data = library.export()
    if args.out is None:
        return data
    _write_private(Path(args.out), json.dumps(data, indent=1))
    return None


def _sheet(library: Library, args: argparse.Namespace) -> Any:
    from faceverify.cluster.sheet import write_contact_sheet

    write_contact_sheet(library, args.out)
    return None


_PEOPLE_ACTIONS = {
    "list": _list,
    "faces": _faces,
    "name": _name,
    "merge": _merge,
    "split": _split,
    "move": _move,
    "reject": _reject,
    "export": _export,
    "sheet": _sheet,
}


def _write_private(path: Path, text: str) -> None:
    """Owner-only, whole or not at all: it names people and where their faces are."""
    from faceverify.paths import atomic_path

    with atomic_path(path, private=True) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _group_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"group {text!r} is not a group id; give a number from `faceverify people list`, or new"
        ) from None


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    """Add ``cluster`` and ``people`` to the main parser."""
    p = sub.add_parser(
        "cluster",
        parents=[common, model_opts],
        help="group every face of a folder of photos by person (rerun: new and changed photos only)",
    )
    p.add_argument("photos", metavar="PHOTOS", help="the folder of photos (searched recursively)")
    _add_db(p)
    p.add_argument("--full", action="store_true", help="group every face again (corrections still hold)")
    p.add_argument(
        "--threshold",
        type=float,
        help="grouping threshold in cosine (default: from the model's own threshold; see docs/clustering.md)",
    )
    p.add_argument(
        "--min-quality",
        type=float,
        help="faces below this quality stay ungrouped (0.75; see detect --quality)",
    )
    p.add_argument("--export", metavar="FILE.json", help="also write photo -> faces -> person as JSON")
    p.add_argument(
        "--sheet", metavar="FILE.html", help="also write a contact sheet: a row of faces per group"
    )
    p.set_defaults(handler=cluster)

    # every option sits on the actions (`people name --db G 3 Ann`): a subcommand's defaults
    # would overwrite the same options given before it
    p = sub.add_parser("people", help="the groups of a photo library: list and correct them")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = _with_model(common, model_opts)
    a = actions.add_parser("list", parents=[common], help="groups: id, faces, name (largest first)")
    a = actions.add_parser("faces", parents=[common], help="the faces of a group, or the ungrouped ones")
    a.add_argument("group", nargs="?", type=int, help="group id (default: faces in no group)")
    a = actions.add_parser("name", parents=[common], help="name a group: it becomes a person of the gallery")
    a.add_argument("group", type=int)
    a.add_argument("name")
    a = actions.add_parser("merge", parents=[common], help="merge groups into TARGET")
    a.add_argument("target", type=int)
    a.add_argument("others", type=int, nargs="+", metavar="GROUP")
    a = actions.add_parser("split", parents=[common], help="move FACEs of GROUP to a new group, kept apart")
    a.add_argument("group", type=int)
    a.add_argument("faces", type=int, nargs="+", metavar="FACE")
    a = actions.add_parser("move", parents=[common], help="put FACE in GROUP (or 'new') for good")
    a.add_argument("face", type=int)
    a.add_argument("to", metavar="GROUP", help="a group id, or new")
    a = actions.add_parser("reject", parents=[common], help="FACE is not the person of GROUP, ever")
    a.add_argument("face", type=int)
    a.add_argument("group", type=int)
    a = actions.add_parser("export", parents=[common], help="photo -> faces -> person as JSON")
    a.add_argument("--out", metavar="FILE.json", help="write it here (default: stdout)")
    a = actions.add_parser("sheet", parents=[common], help="write an HTML contact sheet")
    a.add_argument("out", metavar="FILE.html")
    for parser in actions.choices.values():
        _add_db(parser)
    p.set_defaults(handler=people)


def _with_model(
    common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    from faceverify.cli.common import Parser

    return Parser(add_help=False, parents=[common, model_opts])


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        help="the gallery keeping the library: folder or postgresql:// URL "
        "(default: ~/.local/share/faceverify/gallery)",
    )
