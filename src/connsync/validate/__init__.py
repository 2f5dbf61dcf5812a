"""Validation: discovery, loading, schema, rules and policy -> Findings; offline, no keys."""
