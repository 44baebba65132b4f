"""Command-line edge (Typer): ``siyu …``. Commands parse, call a domain action, print."""
