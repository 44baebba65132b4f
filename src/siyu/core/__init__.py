"""Shared ground for every domain: settings, database, ids, money, time, errors, i18n, audit."""
