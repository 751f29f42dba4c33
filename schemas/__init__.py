"""The Avro event contract, as .avsc files shipped with the package."""
