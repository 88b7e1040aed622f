#!/bin/bash
# the broker with the given server.properties (the official image's script of this name)
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$@"
