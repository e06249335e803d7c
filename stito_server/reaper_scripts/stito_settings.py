"""stito settings (REAPER action): server address, match amount, search effort, what to leave alone, chain saving."""
# @description stito settings
# @author stito
# @version 0.1.0
# @about
#   Stored with SetExtState (section "stito", persistent). To leave a whole FX alone, rename it to
#   include [stito:skip]. To leave parameters alone, list FX:param patterns separated by ";"
#   ("ZamCompX2:Makeup; *:Output*"; "+" re-includes: "*:*; +ZamEQ2:Boost/Cut H" searches one knob).
#   "Save matched FX chain as": a name; after each match that changed something the track's FX chain is saved
#   as <resource>/FXChains/stito/<name>.RfxChain (a taken name gets " 2", " 3" ...); empty saves nothing.

import os
import sys

_DIR = (os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals()
        else os.path.join(RPR_GetResourcePath(), "Scripts", "stito"))  # noqa: F821 (REAPER's global)
if _DIR not in sys.path:
    sys.path.insert(0, _DIR)

import stito_config  # noqa: E402  (stdlib only: no C extensions)

FIELDS = ("address", "amount", "effort", "skip", "idle_timeout_s", "save_chain")
CAPTIONS = ("Server address", "Match amount (0-1 or FX=0.5 list)", "Effort (" + "/".join(stito_config.EFFORTS) + ")",
            "Leave alone (FX:param; ...)", "Give up after no progress (s)", "Save matched FX chain as (name)")


def run_settings() -> None:
    """Show the dialog, validate, store; a bad value is named in a message box and nothing is stored."""
    try:
        current = stito_config.load(RPR_GetExtState)  # noqa: F821
    except stito_config.UserError:
        current = stito_config.Settings()
    values = [f"{getattr(current, k):g}" if isinstance(getattr(current, k), float) else str(getattr(current, k))
              for k in FIELDS]
    ok, *_, answer, _sz = RPR_GetUserInputs("stito settings", len(FIELDS),  # noqa: F821
                                            ",".join(CAPTIONS) + ",separator=\n,extrawidth=260",
                                            "\n".join(values), 4096)
    if not ok:
        return
    parts = answer.split("\n")
    if len(parts) != len(FIELDS):
        RPR_ShowMessageBox(f"stito settings: expected {len(FIELDS)} values, got {len(parts)}; nothing saved.",  # noqa: F821
                           "stito", 0)
        return
    try:
        settings = stito_config.parse({**current.__dict__, **dict(zip(FIELDS, parts))})
    except stito_config.UserError as exc:
        RPR_ShowMessageBox(f"{exc}\nNothing was saved.", "stito settings", 0)  # noqa: F821
        return
    stito_config.save(settings, RPR_SetExtState)  # noqa: F821
    RPR_ShowConsoleMsg(f"stito: settings saved: address {settings.address}, amount {settings.amount}, "  # noqa: F821
                       f"effort {settings.effort}, leave alone {settings.skip or '(nothing)'}, save matched FX chain as "
                       f"{settings.save_chain or '(not saved)'}\n")


run_settings()
