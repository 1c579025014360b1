"""Avro schemas of the Kafka topics, read from the ``.avsc`` files beside this module."""
