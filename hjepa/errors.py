"""The error a user can fix.

Raise :class:`UserError` (or a subclass that also derives from the matching built-in, e.g.
``class NoUsableVideos(UserError, RuntimeError)``, so existing ``except`` clauses keep working)
when the cause is the user's input: a file, a manifest, a config value, a checkpoint. Its
message names the cause and the fix. The ``hjepa`` command prints such errors as a few lines
with exit status 2 and no traceback (``--debug`` or ``HJEPA_DEBUG=1`` shows it); anything
else is a bug and keeps its traceback.

This module imports nothing, so every layer (data, models, training, CLI) may use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix; the message says what is wrong and what to do."""
