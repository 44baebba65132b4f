"""Customers: profiles, identities, the OneID graph, consent and the PII vault."""
