"""The webhook bridge: provider callbacks and acknowledgements coming back in."""
