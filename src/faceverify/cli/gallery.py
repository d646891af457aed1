"""Gallery commands: enroll, identify, verify-id, remove, list, export, import, reindex."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    build_from_args,
    cli_actor,
    done_code,
    face_options,
    log,
    positive_int,
    verdict_line,
)
from faceverify.errors import ConfigError, FaceVerifyError

if TYPE_CHECKING:
    from faceverify.gallery.base import GalleryStore
    from faceverify.gallery.bulk import BulkEnrollResult
    from faceverify.gallery.gallery import Gallery


def add_gallery_options(parser: argparse.ArgumentParser, *, matching: bool = True) -> None:
    from faceverify.gallery.base import MATCH_MODES

    group = parser.add_argument_group("gallery")
    group.add_argument(
        "--db", help="gallery folder or postgresql:// URL (default: ~/.local/share/faceverify/gallery)"
    )
    if matching:
        group.add_argument(
            "--match",
            default="best",
            choices=MATCH_MODES,
            help="compare with a person's best single face (default) or the centroid of their faces",
        )


def _store(args: argparse.Namespace) -> GalleryStore:
    from faceverify.gallery.gallery import open_store

    return open_store(args.db)


def _gallery(args: argparse.Namespace) -> Gallery:
    from faceverify.gallery.gallery import Gallery

    store = _store(args)  # a bad --db fails before the model loads
    return Gallery(
        store, build_from_args(args), match=args.match, faces=face_options(args, None), actor=cli_actor()
    )


def enroll(args: argparse.Namespace) -> int:
    """One person (NAME IMAGE...) or everyone in a folder of people (--from-folder)."""
    from faceverify.decode import iter_image_paths

    if args.from_folder is not None:
        if args.name is not None:
            raise ConfigError(
                f"give either --from-folder or NAME IMAGE..., not both (got NAME {args.name!r})"
            )
        return enroll_folder(args)
    if args.name is None or not args.images:
        raise ConfigError("enroll needs NAME and IMAGE... (one person), or --from-folder FOLDER (many)")
    meta = _parse_meta(args.meta or [])
    images = [str(p) for p in iter_image_paths(args.images)]  # folders are searched recursively
    if not images:
        raise ConfigError(f"no images found in {', '.join(args.images)}")
    gallery = _gallery(args)
    with gallery:
        result = gallery.enroll(args.name, images, meta)
    for reason in result.skipped:
        log.warning("skipped %s", reason)
    print(json.dumps(result.to_dict()) if args.json else f"{result.name}\tadded {result.added}")
    return EXIT_PARTIAL if result.skipped else EXIT_OK


def enroll_folder(args: argparse.Namespace) -> int:
    """Everyone in FOLDER (one sub-folder per person); under torchrun each rank takes a share."""
    from faceverify.distributed import world as start_world
    from faceverify.gallery.bulk import BulkEnrollResult, people_in_folder

    meta = _parse_meta(args.meta or [])
    people_in_folder(args.from_folder)  # a bad folder fails before the model loads
    world = start_world(args.device)
    try:
        gallery = _gallery(args)
        with gallery:
            mine: BulkEnrollResult | str = gallery.enroll_many(
                args.from_folder,
                meta=meta,
                existing=args.existing,
                batch_size=args.batch_size,
                progress=None if world.main and not args.quiet else False,
                rank=world.rank,
                world_size=world.world_size,
            )
    except FaceVerifyError as exc:
        if not world.active:
            raise
        mine = str(exc)  # the other ranks wait for this one: tell them, rather than leave them hanging
    try:
        parts = world.gather(mine)
    finally:
        world.close()
    errors = [part for part in parts if isinstance(part, str)]
    if errors:
        raise FaceVerifyError(errors[0])
    if not world.main:
        return EXIT_OK  # rank 0 reports for everyone
    result = BulkEnrollResult.combine([p for p in parts if not isinstance(p, str)])
    return _report_bulk(result, args, under_torchrun=world.active)


def _report_bulk(result: BulkEnrollResult, args: argparse.Namespace, *, under_torchrun: bool) -> int:
    """People enrolled on stdout (or the whole summary with --json); the rest on stderr."""
    for image in result.skipped:
        log.warning(
            "skipped %s: %s%s", image.source, image.reason, f" ({image.person})" if image.person else ""
        )
    failed = [p for p in result.people if p.status == "failed"]
    for person in failed:
        log.warning("not enrolled %s: %s", person.name, person.reason)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        for person in result.people:
            if person.status == "enrolled":
                print(f"{person.name}\tadded {person.added}")
    log.info("%s", result.summary())
    if failed and not result.count("enrolled"):
        raise FaceVerifyError(
            f"none of the {len(failed)} people could be enrolled; first: {failed[0].name}: {failed[0].reason}"
        )
    return done_code(bool(failed or result.skipped), under_torchrun=under_torchrun)


def identify(args: argparse.Namespace) -> int:
    """Who is in the photo: one answer per face (every face of a group photo), or one for
    the whole image when it is taken as a crop (``--no-detect``, or a crop model)."""
    gallery = _gallery(args)
    with gallery:
        answers = gallery.identify_faces(
            args.image, top_k=args.top_k, threshold=args.threshold, several=args.faces
        )
    if args.json:
        detected = answers[0].face is not None
        print(
            json.dumps(
                {"image": args.image, "faces": [a.to_dict() for a in answers]}
                if detected
                else answers[0].to_dict()
            )
        )
        return EXIT_OK
    for found in answers:
        best = found.matches[0].score if found.matches else float("nan")
        box = "" if found.face is None else "\tface " + ",".join(f"{v:.0f}" for v in found.face.box)
        used = f"(threshold {found.threshold.value:g}, {found.threshold.source})"
        print(f"{found.name or 'unknown'}\t{best:.4f}\t{used}{box}")
        for rank, match in enumerate(found.matches, start=1):
            print(f"{rank}\t{match.name}\t{match.score:.4f}")
    return EXIT_OK


def verify_id(args: argparse.Namespace) -> int:
    gallery = _gallery(args)
    with gallery:
        outcome = gallery.verify_id(args.name, args.image, threshold=args.threshold)
    if args.json:
        print(json.dumps({"name": args.name, "image": args.image, **outcome.to_dict()}))
    else:
        print(verdict_line(outcome))
    return EXIT_OK


def remove(args: argparse.Namespace) -> int:
    from faceverify.gallery.base import Change, check_name

    if (args.name is None) == (args.id is None):
        raise ConfigError("give either a NAME or --id ID (`faceverify list --json` shows ids)")
    change = Change(actor=cli_actor())
    with _store(args) as store:
        if args.id is not None:
            name, faces = store.remove_id(args.id, change=change)
        else:
            name, faces = args.name, store.remove(check_name(args.name), change=change)
    print(
        json.dumps({"removed": name, "faces": faces}, ensure_ascii=False)
        if args.json
        else f"removed {name} ({faces} faces)"
    )
    return EXIT_OK


def audit(args: argparse.Namespace) -> int:
    """A gallery's audit log, or (``--deleted``) the logs kept of deleted galleries."""
    if args.deleted:
        from faceverify.gallery.catalog import open_catalog
        from faceverify.service.settings import default_galleries

        catalog = open_catalog(args.db or default_galleries())
        try:
            entries = catalog.deleted_audit(args.gallery)
        finally:
            catalog.close()
    else:
        with _store(args) as store:
            entries = [entry.to_dict() for entry in store.audit(after=args.after, limit=args.limit)]
    for entry in entries:
        if args.json:
            print(json.dumps(entry))
        else:
            where = f"{entry['gallery']}\t" if args.deleted else ""
            person = "" if entry["person_id"] is None else entry["person_id"]
            print(
                f"{where}{entry['seq']}\t{entry['time']}\t{entry['actor']}\t{entry['action']}\t{person}\t{entry['faces']}"
            )
    return EXIT_OK


def list_people(args: argparse.Namespace) -> int:
    with _store(args) as store:
        people = store.people()
        manifest = store.manifest()
    if args.json:
        print(json.dumps({"model": manifest, "people": [p.to_dict() for p in people]}, ensure_ascii=False))
        return EXIT_OK
    for person in people:
        meta = " ".join(f"{k}={v}" for k, v in sorted(person.meta.items()))
        print(f"{person.name}\t{person.faces}\t{meta}")
    if not args.quiet:
        model = manifest["model"] if manifest else "none yet"
        log.info("%d people in %s (model: %s)", len(people), store.location, model)
    return EXIT_OK


def export(args: argparse.Namespace) -> int:
    from faceverify.gallery.gallery import export_gallery

    with _store(args) as store:
        count = export_gallery(store, args.file)
    print(
        json.dumps({"exported": count, "file": args.file})
        if args.json
        else f"exported {count} people to {args.file}"
    )
    return EXIT_OK


def import_(args: argparse.Namespace) -> int:
    from faceverify.gallery.gallery import import_gallery

    with _store(args) as store:
        people, faces = import_gallery(store, args.file)
    print(
        json.dumps({"people": people, "faces_added": faces})
        if args.json
        else f"imported {people} people, {faces} new faces"
    )
    return EXIT_OK


def reindex(args: argparse.Namespace) -> int:
    """Rebuild the embedded gallery's search index now (a progress bar unless --quiet)."""
    import time

    from faceverify.gallery.sqlite import SQLiteStore

    with _store(args) as store:
        if not isinstance(store, SQLiteStore):
            raise ConfigError(
                f"reindex rebuilds the embedded gallery's index; {store.location} is PostgreSQL, "
                "which maintains its own (REINDEX INDEX faceverify_faces_hnsw rebuilds it)"
            )
        started = time.perf_counter()
        index = store.reindex(progress=not args.quiet)
    info = {
        "kind": index.kind,
        "faces": index.size,
        "memory_mb": round(index.memory_bytes() / 2**20, 2),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(info) if args.json else "\t".join(f"{k} {v}" for k, v in info.items()))
    return EXIT_OK


def _parse_meta(items: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--meta {item!r} is not key=value")
        meta[key.strip()] = value
    return meta


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    """Add the gallery subcommands to the main parser."""
    from faceverify.gallery.bulk import EXISTING

    p = sub.add_parser(
        "enroll",
        parents=[common, model_opts],
        help="add a person (or images of one) to the gallery, or everyone in a folder of people",
    )
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata to store (repeatable)")
    p.add_argument(
        "--min-quality",
        dest="face_min_quality",
        type=float,
        help="refuse faces below this quality: too small, blurred or turned (0.75; 0 takes every face)",
    )
    bulk = p.add_argument_group("many people at once")
    bulk.add_argument(
        "--from-folder",
        metavar="FOLDER",
        help="enrol one person per sub-folder (named after it); rerun to resume: people already "
        "enrolled are skipped. Runs sharded under torchrun",
    )
    bulk.add_argument(
        "--existing",
        choices=EXISTING,
        default="skip",
        help="people already enrolled: skip them (default) or add their new images",
    )
    add_gallery_options(p)
    p.set_defaults(handler=enroll)

    p = sub.add_parser("identify", parents=[common, model_opts], help="who is this? best gallery matches")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5, help="matches to show (5)")
    p.add_argument("--threshold", type=float, help="below it the face is unknown (default: the model's)")
    add_gallery_options(p)
    p.set_defaults(handler=identify)

    p = sub.add_parser("verify-id", parents=[common, model_opts], help="is this really NAME? (1:1)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--threshold", type=float, help="cosine threshold (default: the model's)")
    add_gallery_options(p)
    p.set_defaults(handler=verify_id)

    p = sub.add_parser("remove", parents=[common], help="delete a person and their faces")
    p.add_argument("name", metavar="NAME", nargs="?", help="the person's name")
    p.add_argument("--id", type=int, help="the person's id instead (`faceverify list --json`)")
    add_gallery_options(p, matching=False)
    p.set_defaults(handler=remove)

    p = sub.add_parser(
        "audit",
        parents=[common],
        help="who enrolled, added or erased whom: seq, time, actor, action, id, faces",
    )
    add_gallery_options(p, matching=False)
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="entries after this one (0)")
    p.add_argument("--limit", type=positive_int, default=10_000, help="entries at most (10000)")
    p.add_argument(
        "--deleted",
        action="store_true",
        help="the logs kept of deleted galleries; --db is then the service's galleries folder or URL",
    )
    p.add_argument("--gallery", help="with --deleted: only this gallery's")
    p.set_defaults(handler=audit)

    p = sub.add_parser("list", parents=[common], help="enrolled people: name, faces, metadata")
    add_gallery_options(p, matching=False)
    p.set_defaults(handler=list_people)

    for name, handler, what in (
        ("export", export, "write the gallery to a portable file"),
        ("import", import_, "merge a file written by export"),
    ):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("file", metavar="FILE")
        add_gallery_options(p, matching=False)
        p.set_defaults(handler=handler)

    p = sub.add_parser("reindex", parents=[common], help="rebuild the embedded gallery's search index now")
    add_gallery_options(p, matching=False)
    p.set_defaults(handler=reindex)
