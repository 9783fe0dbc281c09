"""The shared values at the bottom of nebctl: plan types, field changes, resource keys, quantities, settings and
the driver families, and the one way both the database and the sim fleet put a SQLite file in WAL mode. Every
other package may import these; they import nothing else of nebctl."""
