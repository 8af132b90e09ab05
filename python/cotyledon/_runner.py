# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""The runner: services started from the command line, without a ``main()``.

::

    cotyledon-run package.module:ServiceClass[=N] [more specs]
                  [--workers N] [--graceful-timeout S]
                  [--config-file F ...] [--log-level LEVEL]
    python -m cotyledon run ...                    # the same

Each spec adds one service to a :py:class:`ServiceManager`: ``=N`` sets its
worker count, ``--workers`` (default 1) is the count of the others. The
current directory is searched for the modules first, as ``python -m`` does.

Without ``--config-file``, each worker builds its service as
``ServiceClass(worker_id)``. With it (oslo.config installed), the files are
loaded into an ``oslo_config.cfg.ConfigOpts``, given to
:py:func:`cotyledon.oslo_config_glue.setup` (``graceful_shutdown_timeout``
and ``log_options`` from the files; SIGHUP re-reads them), and each worker
builds ``ServiceClass(worker_id, conf)``. ``--graceful-timeout`` wins over
the files' ``graceful_shutdown_timeout``.

Exit status: 0 after a graceful stop (SIGTERM); 2 for a usage error (a bad
spec, a module or class that cannot be loaded, a configuration file that
cannot be read), before any worker starts.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import typing

from cotyledon._service_manager import ServiceManager

SPEC_FORM = "package.module:ServiceClass[=N]"


class Spec(typing.NamedTuple):
    text: str
    module: str
    attribute: str
    workers: int | None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be an integer >= 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"must be a whole number of seconds >= 0 (0: wait forever), not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parse_spec(text: str) -> Spec:
    """``module:Class[=N]``; ValueError with the reason otherwise."""
    target, has_count, count = text.partition("=")
    module, colon, attribute = target.partition(":")
    if not colon or not module or not attribute:
        msg = f"service spec {text!r}: expected {SPEC_FORM}"
        raise ValueError(msg)
    workers = None
    if has_count:
        try:
            workers = _count(count)
        except argparse.ArgumentTypeError as exc:
            msg = f"service spec {text!r}: the worker count {exc}"
            raise ValueError(msg) from None
    return Spec(text, module, attribute, workers)


def load(spec: Spec) -> typing.Any:  # noqa: ANN401
    """The service class a spec names; ValueError naming the spec otherwise."""
    try:
        obj = importlib.import_module(spec.module)
    except Exception as exc:  # noqa: BLE001
        msg = f"service spec {spec.text!r}: cannot import {spec.module!r}: {type(exc).__name__}: {exc}"
        raise ValueError(msg) from None
    for part in spec.attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = f"service spec {spec.text!r}: module {spec.module!r} has no attribute {spec.attribute!r}"
            raise ValueError(msg) from None
    if not callable(obj):
        msg = f"service spec {spec.text!r}: {spec.attribute!r} is not a class (not callable)"
        raise ValueError(msg)
    return obj


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Start services of Cotyledon from the command line: one "
        "master, N worker processes per service.",
    )
    parser.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC",
        help=f"{SPEC_FORM}: a service, with its own worker count N",
    )
    parser.add_argument(
        "--workers", type=_count, default=1, metavar="N", help="worker count of specs without =N (default 1)"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="seconds a worker's terminate() may take (default 60, or the configuration's)",
    )
    parser.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="F",
        help="an oslo.config file (repeatable): services are built as ServiceClass(worker_id, conf)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log on stderr (default INFO)",
    )
    return parser


def _load_config(parser: argparse.ArgumentParser, files: list[str]) -> typing.Any:  # noqa: ANN401
    try:
        from oslo_config import cfg  # noqa: PLC0415
    except ImportError:
        parser.error("--config-file needs oslo.config: pip install 'cotyledon[oslo]'")
    conf = cfg.ConfigOpts()
    try:
        conf(
            args=[f"--config-file={f}" for f in files],
            prog=parser.prog,
            default_config_files=[],
            default_config_dirs=[],
        )
    except (cfg.Error, SystemExit) as exc:
        parser.error(f"cannot load the configuration: {exc}")
    return conf


def main(argv: list[str] | None = None, prog: str = "cotyledon-run") -> None:
    """Run the services of the command line ``argv`` (default
    ``sys.argv[1:]``) until SIGTERM: raises ``SystemExit``."""
    parser = _parser(prog)
    args = parser.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    services = []
    for text in args.specs:
        try:
            spec = parse_spec(text)
            services.append((spec, load(spec)))
        except ValueError as exc:
            parser.error(str(exc))
    conf = _load_config(parser, args.config_file) if args.config_file else None

    logging.basicConfig(level=args.log_level)
    kwargs = {} if args.graceful_timeout is None else {"graceful_shutdown_timeout": args.graceful_timeout}
    manager = ServiceManager(**kwargs)
    extra: tuple[typing.Any, ...] = ()
    if conf is not None:
        from cotyledon import oslo_config_glue  # noqa: PLC0415

        oslo_config_glue.setup(manager, conf)
        if args.graceful_timeout is not None:
            # Over the files' value, on SIGHUP too.
            conf.set_override("graceful_shutdown_timeout", args.graceful_timeout)
            manager._graceful_shutdown_timeout = args.graceful_timeout  # noqa: SLF001
        extra = (conf,)
    for spec, service in services:
        try:
            manager.add(service, workers=spec.workers or args.workers, args=extra)
        except (TypeError, ValueError) as exc:
            parser.error(f"service spec {spec.text!r}: {exc}")
    manager.run()
