"""Training baselines: schema and reference statistics of a model version's training data.

- :mod:`.model` — what a baseline holds (:class:`~.model.Baseline`), as an editable JSON document;
- :mod:`.readers` — streaming readers of training files (CSV, JSON lines, Avro, Parquet);
- :mod:`.profile` — per-column streaming accumulators that give the statistics and schema;
- :mod:`.build` — :func:`~.build.build_baseline`: a training file in, a baseline out.
"""
