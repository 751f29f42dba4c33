"""Training baselines: schema and reference statistics of a model version's training data.

- :mod:`.model` — what a baseline holds (:class:`~.model.Baseline`), as an editable JSON document;
- :mod:`.readers` — streaming readers of training files (CSV, JSON lines, Avro, Parquet);
- :mod:`.profile` — per-column streaming accumulators that give the statistics and schema;
- :mod:`.novelty` — a HalfSpaceTrees model of the training rows, stored as JSON, for the novelty share per window;
- :mod:`.build` — :func:`~.build.build_baseline`: a training file in, a baseline out;
- :mod:`.catalog` — baselines on a compacted Kafka topic, followed by every worker.
"""
