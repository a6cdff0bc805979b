"""The pipeline spec: pydantic models with YAML line marks and ``${var}``, its JSON Schema, and planning
against the method registry. No Spark action, no IPython."""
