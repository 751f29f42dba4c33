"""Edges of driftline: the producer API, the Avro codec, Kafka admin, the Elasticsearch sink, local infrastructure."""
