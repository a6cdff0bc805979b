"""Running a plan: the Python API (``Pipeline``, ``PipelineResult``), the engine, the kernel's streaming registry,
retries, previews, in-spec tests and the run history. No IPython."""
