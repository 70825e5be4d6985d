"""Scheduling and lifecycle of lives: agenda, registration, iCalendar feed."""
