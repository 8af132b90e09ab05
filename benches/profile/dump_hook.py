"""Runs a benchmark application (argv[1:]) as ``__main__`` after
installing a SIGUSR1 handler that writes every object the collector
knows, and their direct referents, to $DUMP_DIR/objects.<pid>: one line
``address<TAB>size<TAB>what`` each (for a collected object the address
is that of its GC header, 16 bytes before the object). Used by
dirty_pages.py --objects; installed in the master, so every worker
inherits it and pays for it only when signalled.
"""

import gc
import os
import runpy
import signal
import sys
import types

GC_HEAD = 16
HAVE_GC = 1 << 14


def _what(obj):
    kind = type(obj).__name__
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.CodeType):
        return f"code {obj.co_qualname if hasattr(obj, 'co_qualname') else obj.co_name}"
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, type):
        return f"type {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, dict):
        return "dict"
    if type(obj) is str and os.environ.get("DUMP_STR_VALUES"):
        return f"str {obj[:40]!r}"
    return kind


def _dump(signum, frame):
    path = os.path.join(os.environ["DUMP_DIR"], f"objects.{os.getpid()}")
    seen = set()
    # gc.freeze() (the default of our wheel) hides the master's objects
    # from gc.get_objects(); the pages were counted already.
    gc.unfreeze()
    lines = []
    for obj in gc.get_objects():
        for o in (obj, *gc.get_referents(obj)):
            if id(o) in seen:
                continue
            seen.add(id(o))
            # sys.getsizeof counts the GC header of a type that has one.
            start = id(o) - GC_HEAD if type(o).__flags__ & HAVE_GC else id(o)
            size = sys.getsizeof(o)
            lines.append(f"{start}\t{size}\t{_what(o)}\n")
    with open(path, "w") as f:
        f.writelines(lines)
    open(path + ".done", "w").close()


signal.signal(signal.SIGUSR1, _dump)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
