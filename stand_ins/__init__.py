"""Local stand-ins for production services (Stripe, Kafka, Redis) used by tests and the zero-setup run."""
