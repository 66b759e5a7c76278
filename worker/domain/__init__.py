"""Pure product logic: no AMQP and no MongoDB below this package, only the store interface."""
