"""Domain core. Imports no Qt, no GUI and no CLI (enforced by import-linter)."""
