"""Locust load tests speaking the tracking protocol (`make load`, see README "Load tests")."""
