"""`python -m kafka_relay`: the Procfile's `relay` process."""

from kafka_relay.relay import main

if __name__ == "__main__":
    main()
