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
"""Configure a ServiceManager from an ``oslo.config`` ``ConfigOpts``.

Needs ``oslo.config`` (the ``oslo`` extra).
"""

from __future__ import annotations

import copy
import functools
import logging
import typing

from oslo_config import cfg

if typing.TYPE_CHECKING:
    from cotyledon import Service
    from cotyledon import ServiceManager
    from cotyledon import types

LOG = logging.getLogger(__name__)

ReloadMethod = typing.Literal["reload", "mutate"]

service_opts = [
    cfg.BoolOpt(
        "log_options",
        default=True,
        mutable=True,
        help="Enables or disables logging values of all registered options "
        "when starting a service (at DEBUG level).",
    ),
    cfg.IntOpt(
        "graceful_shutdown_timeout",
        default=60,
        mutable=True,
        help="Specify a timeout after which a gracefully shutdown server "
        "will exit. Zero value means endless wait.",
    ),
]


def _log_options(conf: typing.Any) -> None:  # noqa: ANN401
    if conf.log_options:
        LOG.debug("Full set of CONF:")
        conf.log_opt_values(LOG, logging.DEBUG)


def _apply_to_manager(manager: ServiceManager, conf: typing.Any) -> None:  # noqa: ANN401
    manager._graceful_shutdown_timeout = conf.graceful_shutdown_timeout  # noqa: SLF001
    _log_options(conf)


def _reread(conf: typing.Any, reload_method: ReloadMethod) -> None:  # noqa: ANN401
    if reload_method == "reload":
        conf.reload_config_files()
    elif reload_method == "mutate":
        conf.mutate_config_files()


def _restored(conf: typing.Any) -> bool:  # noqa: ANN401
    """Whether ``conf`` was unpickled (a worker in a fresh interpreter,
    ``spawn`` or ``forkserver``): oslo.config restores a configuration
    without its command-line parser, and it cannot read its files again.
    Such a worker keeps the configuration it was started with; the master
    re-reads the files, and a worker restarted by ``Service.reload()`` (the
    default) gets the new one."""
    return getattr(conf, "_oparser", False) is None and getattr(conf, "_args", None) is not None


def _on_new_worker(
    conf: typing.Any,  # noqa: ANN401
    reload_method: ReloadMethod,
    service_id: types.ServiceId,
    worker_id: types.WorkerId,
    service: Service,
) -> None:
    # Before the service's own reload, the worker re-reads the config files
    # and logs the options again.
    original_reload = service.reload

    def reload() -> None:
        if not _restored(conf):
            _reread(conf, reload_method)
        _log_options(conf)
        original_reload()

    service.reload = reload  # type: ignore[method-assign]
    _log_options(conf)


def register_opts(conf: typing.Any) -> None:  # noqa: ANN401
    """Register cotyledon's options (``log_options``,
    ``graceful_shutdown_timeout``) in ``conf``."""
    conf.register_opts(service_opts)


def unregister_opts(conf: typing.Any) -> None:  # noqa: ANN401
    """Remove cotyledon's options from ``conf``."""
    conf.unregister_opts(service_opts)


def link(
    service_manager: ServiceManager,
    conf: typing.Any,  # noqa: ANN401
    reload_method: ReloadMethod = "reload",
) -> None:
    """Apply ``conf`` to ``service_manager`` and keep them in step.

    :py:func:`register_opts` must have been called. Copies
    ``graceful_shutdown_timeout`` into the manager and logs the options
    (when ``log_options``); on SIGHUP the master re-reads the config files
    (``reload_method`` "reload" or "mutate") and applies them again; each
    new worker logs the options, and re-reads the files before its
    service's ``reload()``.
    """
    _apply_to_manager(service_manager, conf)

    def on_reload() -> None:
        _reread(conf, reload_method)
        _apply_to_manager(service_manager, conf)

    service_manager.register_hooks(
        on_new_worker=functools.partial(_on_new_worker, conf, reload_method),
        on_reload=on_reload,
    )


def setup(
    service_manager: ServiceManager,
    conf: typing.Any,  # noqa: ANN401
    reload_method: ReloadMethod = "reload",
) -> None:
    """:py:func:`register_opts` then :py:func:`link`."""
    register_opts(conf)
    link(service_manager, conf, reload_method)


def list_opts() -> list[tuple[None, list[typing.Any]]]:
    """The options, for ``oslo-config-generator`` (entry point
    ``oslo.config.opts``: ``cotyledon``)."""
    return [(None, copy.deepcopy(service_opts))]
