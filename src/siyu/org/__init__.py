"""Tenancy and organisation: agencies, brands, org units, staff, roles, data scopes, auth."""
