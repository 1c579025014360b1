"""One shape for every bench result file: name, the command that made it, date, machine, results."""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone


def write_result(path: str, name: str, results: dict) -> None:
    """Writes ``results`` to ``path`` (JSON) with the command line that produced them."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"name": name, "command": " ".join([os.path.relpath(sys.executable)] + sys.argv),
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
                   "results": results}, handle, ensure_ascii=False, indent=2)
