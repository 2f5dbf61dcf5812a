"""Reconciliation: desired vs stored -> a plan (pure diff), saved plans, and the locked apply."""
