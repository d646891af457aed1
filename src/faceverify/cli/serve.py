"""``faceverify serve`` (the HTTP service) and ``faceverify keys`` (its API keys)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import EXIT_OK, cli_actor, face_options, model_spec_from_args, positive_int
from faceverify.errors import ConfigError

if TYPE_CHECKING:
    from faceverify.service.settings import ServiceSettings

log = logging.getLogger("faceverify.cli")


#: Largest request head (request line + headers) uvicorn buffers: a client sending
#: endless headers is cut off here, not after filling memory.
MAX_HEADER_BYTES = 16 * 1024


def serve(args: argparse.Namespace) -> int:
    """Build the settings, make sure keys exist (or say loudly that none are used), run uvicorn."""
    import uvicorn

    from faceverify.runtime.build import check_installed_for
    from faceverify.service.settings import SETTINGS_ENV

    settings = settings_from_args(args)
    check_installed_for(settings.spec)  # one line now, not a traceback from inside uvicorn
    _announce_access(settings, args.port)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "limit_concurrency": args.max_connections,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "log_level": "warning" if args.quiet else "info",
        "server_header": False,
        # open event streams would otherwise hold a shutdown (and the cameras) for ever
        "timeout_graceful_shutdown": max(args.timeout, 5.0),
    }
    if args.workers > 1:  # each worker process builds the app from the settings it inherits
        log.warning(
            "--workers %d: each worker keeps its own video jobs and watches its own cameras; a "
            "video job is found only by the worker that took its upload (others answer 404)",
            args.workers,
        )
        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run(
            "faceverify.service.app:app_from_environment", factory=True, workers=args.workers, **options
        )
    else:
        from faceverify.service.app import create_app

        uvicorn.run(create_app(settings), **options)
    return EXIT_OK


def _announce_access(settings: ServiceSettings, port: int) -> None:
    """Without ``--insecure``: create an admin key on the first start and show it once, on
    stderr (as Jupyter shows its token). With it: say who can reach the galleries."""
    from faceverify.service.keys import KeyStore
    from faceverify.service.settings import exposure_warning

    if settings.insecure:
        if Path(settings.keys_file).expanduser().exists():
            log.warning("--insecure: the API keys in %s are not checked", settings.keys_file)
        log.warning("%s", exposure_warning(settings.host, insecure=True))
        return
    secret = KeyStore(settings.keys_file).create_first()
    if secret is None:
        return
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{port}"
    print(
        f"\nNo API keys yet: created an admin key (stored hashed in {settings.keys_file}).\n"
        "It is shown only now; keep it somewhere safe:\n\n"
        f"    {secret}\n\n"
        f"  page:  {base}/#key={secret}\n"
        f"  API:   curl -H 'X-API-Key: {secret}' {base}/v1/galleries\n"
        "  more keys (read, enrol, write, admin): faceverify keys create --scope read\n",
        file=sys.stderr,
        flush=True,
    )


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    """The service's settings: the model the shared model options describe (read as every
    command reads them), with ``--threshold``, and the service's own options."""
    from faceverify.service.settings import (
        Batching,
        Camera,
        Limits,
        ServiceSettings,
        VideoSettings,
        default_galleries,
    )

    if args.faces is not None:
        raise ConfigError(
            f"--faces {args.faces}: serve takes no --faces; each route keeps its job's default "
            "(largest for verify, all for identify and detect, refuse for enrolment) and "
            "/v1/embed takes ?faces="
        )
    spec = replace(model_spec_from_args(args), threshold=args.threshold)
    return ServiceSettings(
        **spec.to_dict(),
        db=args.db or default_galleries(),
        keys_file=keys_path(args),
        insecure=args.insecure,
        host=args.host,
        faces=face_options(args, None),
        threads=args.threads,
        match=args.match,
        limits=Limits(
            max_body_bytes=int(args.max_body_mb * (1 << 20)),
            max_image_bytes=int(args.max_image_mb * (1 << 20)),
            max_images=args.max_images,
            max_pixels=int(args.max_megapixels * 1_000_000),
            max_request_pixels=int(args.max_request_megapixels * 1_000_000),
            max_decoded_bytes=int(args.max_decoded_mb * (1 << 20)),
            timeout_s=args.timeout,
        ),
        batching=Batching(
            enabled=not args.no_batching,
            max_batch=args.batch_size,
            max_wait_ms=args.batch_wait_ms,
            max_queue=args.queue_size,
        ),
        cors_origins=tuple(args.cors_origin or ()),
        library_roots=tuple(args.library_root or ()),
        video=VideoSettings(
            max_upload_bytes=int(args.max_video_mb * (1 << 20)),
            workers=args.video_workers,
            max_pending=args.video_queue,
            folder=args.video_folder,
            cameras=tuple(Camera.parse(text) for text in args.camera or ()),
        ),
    )


def keys_path(args: argparse.Namespace) -> str:
    from faceverify.service.settings import default_keys_file

    return str(args.keys or default_keys_file())


def keys_create(args: argparse.Namespace) -> int:
    from faceverify.service.keys import KeyStore

    store = KeyStore(keys_path(args))
    secret, record = store.create(
        args.scope, gallery=args.gallery, label=args.label or "", expires=args.expires, actor=cli_actor()
    )
    if args.json:
        print(json.dumps({"key": secret, **asdict(record)}))
    else:
        print(secret)
        if not args.quiet:
            where = f"gallery {record.gallery}" if record.gallery else "all galleries"
            until = f" until {record.expires}" if record.expires else ""
            log.info(
                "created %s key %s for %s%s; it is shown only now", record.scope, record.id, where, until
            )
    return EXIT_OK


def keys_list(args: argparse.Namespace) -> int:
    from faceverify.service.keys import KeyStore

    keys = KeyStore(keys_path(args)).records()
    if args.json:
        print(json.dumps([asdict(key) for key in keys]))
        return EXIT_OK
    for key in keys:
        print(
            f"{key.id}\t{key.scope}\t{key.gallery or '*'}\t{key.created}\t{key.expires or '-'}\t{key.label}"
        )
    return EXIT_OK


def keys_revoke(args: argparse.Namespace) -> int:
    from faceverify.service.keys import KeyStore

    key = KeyStore(keys_path(args)).revoke(args.id, actor=cli_actor())
    print(json.dumps({"revoked": key.id}) if args.json else f"revoked {key.id}")
    return EXIT_OK


def keys_log(args: argparse.Namespace) -> int:
    from faceverify.service.keys import KeyStore

    for entry in KeyStore(keys_path(args)).log():
        if args.json:
            print(json.dumps(entry))
        else:
            fields = (entry["time"], entry["actor"], entry["action"], entry["key"], entry["scope"])
            print("\t".join((*fields, entry["gallery"] or "*")))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    """Add ``serve`` and ``keys`` to the main parser."""
    from faceverify.gallery.base import MATCH_MODES
    from faceverify.service.keys import SCOPES

    keys_file = argparse.ArgumentParser(add_help=False)
    keys_file.add_argument(
        "--keys", help="API keys file (default: ~/.local/share/faceverify/service/keys.json)"
    )

    p = sub.add_parser(
        "serve",
        parents=[common, model_opts, keys_file],
        help="HTTP API and web page for verification and galleries",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")
    p.add_argument(
        "--db", help="galleries: a folder (one gallery per sub-folder) or a postgresql:// URL (a schema each)"
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, help="server processes, each with the model (1)"
    )
    p.add_argument("--threads", type=positive_int, help="CPU threads for the network (default: torch's)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="no API keys at all: anyone who reaches the service may read and change the galleries "
        "(on 127.0.0.1 web pages and other Host names are still refused)",
    )
    p.add_argument("--threshold", type=float, help="cosine threshold (default: the model's, else 0.5)")
    p.add_argument("--match", default="best", choices=MATCH_MODES, help="gallery matching (best)")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="allow browser calls from ORIGIN")
    p.add_argument(
        "--library-root",
        action="append",
        metavar="DIR",
        help="a server folder whose photos clients may scan into photo libraries (repeatable; default none)",
    )
    video = p.add_argument_group("video")
    video.add_argument(
        "--camera",
        action="append",
        metavar="NAME=GALLERY:SOURCE",
        help="a camera clients may subscribe to at /v1/cameras/NAME/events, naming the people of "
        "GALLERY; SOURCE is a video file, /dev/videoN (or N) or an rtsp/http/udp URL, e.g. "
        "door=staff:rtsp://10.0.0.5/stream (repeatable; watched only while someone listens)",
    )
    video.add_argument("--max-video-mb", type=float, default=512, help="one uploaded video (512)")
    video.add_argument(
        "--video-workers", type=positive_int, default=1, help="uploaded videos watched at once (1)"
    )
    video.add_argument(
        "--video-queue", type=positive_int, default=4, help="uploaded videos waiting; more get 503 (4)"
    )
    video.add_argument(
        "--video-folder",
        metavar="DIR",
        help="where uploads wait for a worker (default: the temporary folder)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-body-mb", type=float, default=32, help="request body (32)")
    limits.add_argument("--max-image-mb", type=float, default=10, help="one uploaded image (10)")
    limits.add_argument("--max-images", type=positive_int, default=8, help="images per request (8)")
    limits.add_argument("--max-megapixels", type=float, default=25, help="pixels of one image (25)")
    limits.add_argument(
        "--max-request-megapixels", type=float, default=100, help="pixels of all images of a request (100)"
    )
    limits.add_argument(
        "--max-decoded-mb",
        type=float,
        default=1024,
        help="decoded images in memory, all requests of a worker together; more get 503 (1024)",
    )
    limits.add_argument("--timeout", type=float, default=30, help="seconds per request, upload included (30)")
    limits.add_argument(
        "--max-connections", type=positive_int, default=128, help="open at once; more get 503"
    )
    batching = p.add_argument_group("batching (--batch-size is the largest batch)")
    batching.add_argument("--batch-wait-ms", type=float, default=5, help="wait for companions (5 ms)")
    batching.add_argument("--queue-size", type=positive_int, default=256, help="images waiting; more get 503")
    batching.add_argument("--no-batching", action="store_true", help="one forward pass per request")
    p.set_defaults(handler=serve)

    p = sub.add_parser("keys", help="create, list and revoke API keys of the HTTP service")
    actions = p.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=type(p))
    actions.required = True
    a = actions.add_parser("create", parents=[common, keys_file], help="make a key and print it (once)")
    a.add_argument(
        "--scope",
        required=True,
        choices=SCOPES,
        help="read (verify, identify, list) < enrol (add people and photos) < write (remove people) "
        "< admin (galleries and keys); each includes the ones before",
    )
    a.add_argument("--gallery", help="limit the key to this gallery")
    a.add_argument("--expires", metavar="WHEN", help="a duration (12h, 30d, 8w) or a date (2027-01-31)")
    a.add_argument("--label", help="a note: who holds the key")
    a.set_defaults(handler=keys_create)
    a = actions.add_parser(
        "list", parents=[common, keys_file], help="id, scope, gallery, created, expires, label"
    )
    a.set_defaults(handler=keys_list)
    a = actions.add_parser(
        "log",
        parents=[common, keys_file],
        help="every key made or revoked: time, actor, action, id, scope",
    )
    a.set_defaults(handler=keys_log)
    a = actions.add_parser("revoke", parents=[common, keys_file], help="delete a key by its id")
    a.add_argument("id", metavar="ID")
    a.set_defaults(handler=keys_revoke)
