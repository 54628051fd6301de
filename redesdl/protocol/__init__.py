"""The wire protocol every redesdl actor speaks: framing, messages, errors."""
