"""stito: Match Style (REAPER action): set the input track's FX so the input item sounds like the reference item."""
# @description stito: Match Style
# @author stito
# @version 0.1.0
# @provides
#   [nomain] stito_bootstrap.py
#   [nomain] stito_config.py
#   [nomain] stito_gather.py
#   [nomain] stito_apply.py
#   [nomain] stito_match.py
# @about
#   Select the input item (on the track whose FX stito sets) and one to three reference items (the
#   sound to match; several: processed alike, their mean is the target). stito-server finds FX
#   parameter values; they are applied in one undo block.
#   Needs stito-server running (`stito-server`). See docs/reaper-manual-test.md.

import os
import sys

_DIR = (os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals()
        else os.path.join(RPR_GetResourcePath(), "Scripts", "stito"))  # noqa: F821 (REAPER's global)
if _DIR not in sys.path:
    sys.path.insert(0, _DIR)

import stito_bootstrap  # noqa: E402

stito_bootstrap.add_paths(_DIR)

import stito_match  # noqa: E402  (imports pyzmq/numpy once per REAPER process; see stito_match's docstring)

stito_match.start()
