"""Everything AMQP: topology, the batch consumer (the one place that acks), publishing."""
