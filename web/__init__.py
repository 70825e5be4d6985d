"""Jinja2 templates (French), static JavaScript and CSS."""
