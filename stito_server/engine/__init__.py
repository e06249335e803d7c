"""The engine: match options, excerpts, the objective, rendering workers, CMA-ES, and match() that ties them."""
