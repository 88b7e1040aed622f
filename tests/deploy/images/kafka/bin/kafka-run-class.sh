#!/bin/bash
# java with Kafka's jars and logging: kafka-run-class.sh CLASS ARGS...
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' "$@"
