"""The lab's training house: corpora (data/), pretext effects and presets, pair and ranking sets, encoder fits."""
