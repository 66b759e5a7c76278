"""profile-worker: imports customer profiles and maintains relations from RabbitMQ commands."""

__version__ = "0.1.0"
