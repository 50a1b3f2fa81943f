"""One module per channel provider behind one send() protocol, and the provider sandbox."""
