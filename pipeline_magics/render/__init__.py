"""Pictures of a pipeline (its graph as SVG, Mermaid or DOT), coloured by step type or, after a run, by status.
Plain text and SVG: no IPython."""
