"""Tests of the webhook bridge."""
