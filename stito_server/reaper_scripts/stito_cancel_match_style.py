"""stito: Cancel Match Style (REAPER action): ask the running Match Style to stop; nothing is changed."""
# @description stito: Cancel Match Style
# @author stito
# @version 0.1.0
# @about
#   Stops a running Match Style. Uses only REAPER's ExtState (no imports), so it is safe to run any time.

if RPR_GetExtState("stito", "running") != "1":  # noqa: F821 (REAPER's globals)
    RPR_ShowMessageBox("No stito match is running.", "stito", 0)  # noqa: F821
else:
    RPR_SetExtState("stito", "cancel", "1", False)  # noqa: F821
    RPR_ShowConsoleMsg("stito: cancel requested\n")  # noqa: F821
