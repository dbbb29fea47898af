#!/bin/sh
# Creates the topics clawwatch instances share (see README.md), with Kafka's own tool.
#   KAFKA_BIN=/opt/kafka/bin BROKERS=kafka:9092 PARTITIONS=12 ./topics.sh
set -eu
: "${KAFKA_BIN:=/opt/kafka/bin}" "${BROKERS:=localhost:9092}" "${PARTITIONS:=12}"
topic() { "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BROKERS" --create --if-not-exists --topic "$@"; }
# Optional: what shippers' Kafka sinks write, for `clawwatch route --kafka-input agents.raw`.
topic agents.raw --partitions 1
# Traffic keyed by agent address, and a copy of every control record in each partition: the
# partition count caps the instances and is fixed once data flows; keep it at least as long as
# agents live (a partition without saved state reads from its beginning).
topic agents.traffic --partitions "$PARTITIONS" --config retention.ms=1209600000
topic agents.judged --partitions "$PARTITIONS"
topic clawwatch.incidents --partitions 1
# Each partition's saved state: only the latest save per key is needed.
topic clawwatch.state --partitions 1 --config cleanup.policy=compact
