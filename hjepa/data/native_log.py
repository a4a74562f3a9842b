"""Keep decord's C++ log lines off the terminal.

decord reports a file it cannot open twice: as the Python exception that hjepa turns into its
one skip warning naming the file, and as a line its C++ core (dmlc logging) writes straight to
file descriptor 2, e.g. ``[12:00:00] .../video_reader.cc:83: ERROR opening: x.mp4, ...``.
``decord.logging.set_level`` quiets only FFmpeg's messages, not these, and Python cannot
reach them through ``sys.stderr``. So the calls into decord run with descriptor 2 pointed at
a temporary file; afterwards every line of it that is not a decord log line (another thread's
output, a message from some other library) is written back to the real stderr, so nothing
but decord's own lines is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

# decord / dmlc log lines: "[hh:mm:ss] path/to/file.cc:83: message"
DECORD_LOG_LINE = re.compile(rb"^\[\d\d:\d\d:\d\d\] \S+\.(?:cc|cpp|h):\d+: ")

_lock = threading.Lock()  # one redirection at a time per process (descriptor 2 is shared)


@contextlib.contextmanager
def without_decord_log() -> Iterator[None]:
    """Run the body with decord's native log lines on descriptor 2 dropped (see module doc)."""
    with _lock:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):  # a closed or replaced sys.stderr
            pass
        with tempfile.TemporaryFile() as sink:
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                kept = [ln for ln in sink.read().splitlines(keepends=True) if not DECORD_LOG_LINE.match(ln)]
                if kept:
                    os.write(2, b"".join(kept))
