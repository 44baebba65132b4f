"""HTTP API edge (``/api/v1``): parse, check permission through the domain, call, render."""
