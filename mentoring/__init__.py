"""Mentor profiles, help requests, matching and private conversations."""
