"""AFx-Rep: the learned production-style encoder — its network, pretext data, training and shipped weights."""
