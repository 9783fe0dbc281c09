"""The shared values at the bottom of nebctl: plan types, field changes, resource keys, quantities, settings and
the driver families. Every other package may import these; they import nothing else of nebctl."""
