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
"""Command line of the Python face: ``cotyledon-ctl``, ``cotyledon-run`` and
``python -m cotyledon``.

``python -m cotyledon run SPEC ...`` (or ``cotyledon-run SPEC ...``) starts
services without a ``main()``: see :py:mod:`cotyledon._runner`.

Operators drive a running master through its control socket (enabled by
``ServiceManager(control_socket=PATH)`` or, for an unmodified application,
by ``COTYLEDON_CONTROL_SOCKET=PATH`` in the master's environment)::

    cotyledon-ctl --socket PATH status            # a table of services and workers
    cotyledon-ctl --socket PATH status --json     # the same as JSON (cotyledon.status)
    cotyledon-ctl --socket PATH status --check    # exit 0 only when healthy
    cotyledon-ctl --socket PATH scale api 3       # set a service's worker count
    cotyledon-ctl --socket PATH restart api 0     # restart worker 0 of "api"
    cotyledon-ctl --socket PATH reload            # as SIGHUP
    cotyledon-ctl --socket PATH metrics           # Prometheus text
    cotyledon-ctl --socket PATH stop              # as SIGTERM
    python -m cotyledon ctl --socket PATH status  # the same commands

``--socket`` defaults to ``$COTYLEDON_CONTROL_SOCKET``. Exit status: 0
success, 1 error (or unhealthy with ``--check``), 2 usage error, 3 no
master at that socket. It is the engine's own ``cotyledon-ctl``
(``cotyledon._core.ctl_main``), the same program as the Rust and C faces'.
"""

from __future__ import annotations

import signal
import sys

from cotyledon import _core

USAGE = """\
usage: python -m cotyledon ctl [--socket PATH] COMMAND [ARGS]
       python -m cotyledon run package.module:ServiceClass[=N] [...] [OPTIONS]

ctl: drive a running master through its control socket (the cotyledon-ctl
command); `python -m cotyledon ctl --help` lists the commands.
run: start services without writing a main() (the cotyledon-run command);
`python -m cotyledon run --help` lists the options.
"""


def _flush_stdio() -> None:
    # The CLI writes to file descriptors 1 and 2 directly: what Python
    # buffered must come out first.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def ctl() -> None:
    """The ``cotyledon-ctl`` console script: runs the command line in
    ``sys.argv[1:]`` and exits with its status."""
    # Ctrl-C ends the command at once, as it does the Rust binary: Python's
    # own handler would only run once the engine's client returns.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _flush_stdio()
    sys.exit(_core.ctl_main(sys.argv[1:]))


def run() -> None:
    """The ``cotyledon-run`` console script."""
    from cotyledon import _runner  # noqa: PLC0415

    _runner.main()


def main() -> None:
    """``python -m cotyledon ctl ARGS``: ``cotyledon-ctl ARGS``;
    ``python -m cotyledon run ARGS``: ``cotyledon-run ARGS``. Anything
    else prints the usage and exits with status 2."""
    if len(sys.argv) >= 2 and sys.argv[1] == "ctl":
        del sys.argv[1]
        ctl()
    if len(sys.argv) >= 2 and sys.argv[1] == "run":
        from cotyledon import _runner  # noqa: PLC0415

        _runner.main(sys.argv[2:], prog="python -m cotyledon run")
    sys.stderr.write(USAGE)
    sys.exit(2)


if __name__ == "__main__":
    main()
