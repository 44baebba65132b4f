"""Content library: materials, templates, tracking links, variants, UGC/KOC notes."""
