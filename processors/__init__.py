"""The Faust app and its agents: dispatcher, channel agents, retries, projection."""
