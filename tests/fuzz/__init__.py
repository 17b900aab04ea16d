"""Coverage-guided fuzzing (atheris) of the decoder and of the pure per-event path.

Each harness runs as ``python -m tests.fuzz.<name> [libFuzzer flags] [corpus dirs]``:
``decode`` (raw bytes into ``decode_record``), ``event_path`` (raw bytes, one record per
line, through the per-event steps of ``Pipeline.process``) and ``structured`` (contract-shaped
events with hostile field values, built with ``atheris.FuzzedDataProvider``).
"""
