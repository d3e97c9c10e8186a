"""sensorfuse models."""
