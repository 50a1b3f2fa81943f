"""A local stand-in for every provider: real wire formats, validation, recording, faults."""
